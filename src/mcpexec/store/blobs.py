"""Artifact bytes, behind a small interface a shared object store can implement later.

``FileBlobStore`` keeps each artifact as a file under ``$MCPEXEC_HOME/artifacts/<run id>/``,
written to a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import abc
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

import anyio.to_thread

_CHUNK = 1024 * 1024
_NAME_MAX = 255  # bytes in one file name (ext4, tmpfs, xfs, btrfs)


class BlobStore(abc.ABC):
    @abc.abstractmethod
    async def put(self, run_id: str, name: str, file: BinaryIO, max_bytes: int) -> tuple[int, str]:
        """Copy at most ``max_bytes`` from ``file``; returns (size, sha256 hex)."""

    @abc.abstractmethod
    async def path(self, run_id: str, name: str) -> Path | None:
        """A local path to read the blob from, or ``None`` if absent."""

    @abc.abstractmethod
    async def delete_run(self, run_id: str) -> None:
        """Delete all blobs of a run (idempotent)."""


class FileBlobStore(BlobStore):
    def __init__(self, root: Path) -> None:
        self.root = root

    def _file(self, run_id: str, name: str) -> Path:
        # Names may contain '/', so each is one quoted file name: no directory tricks possible.
        # A quoted name too long for one file name becomes "%%" + its SHA-256: quote() never
        # emits '%' followed by a non-hex digit, so no short name maps to the same file.
        file = quote(name, safe="", errors="surrogateescape")
        if len(file) > _NAME_MAX:
            file = "%%" + hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()
        return self.root / quote(run_id, safe="") / file

    async def put(self, run_id: str, name: str, file: BinaryIO, max_bytes: int) -> tuple[int, str]:
        return await anyio.to_thread.run_sync(self._put, run_id, name, file, max_bytes)

    def _put(self, run_id: str, name: str, file: BinaryIO, max_bytes: int) -> tuple[int, str]:
        target = self._file(run_id, name)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        digest = hashlib.sha256()
        size = 0
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                while size < max_bytes:
                    chunk = file.read(min(_CHUNK, max_bytes - size))
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return size, digest.hexdigest()

    async def path(self, run_id: str, name: str) -> Path | None:
        file = self._file(run_id, name)
        return file if file.is_file() else None

    async def delete_run(self, run_id: str) -> None:
        folder = self.root / quote(run_id, safe="")
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(folder, ignore_errors=True))
