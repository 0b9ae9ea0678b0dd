"""Artifact bytes, behind a small interface: written from a file, read as a stream of chunks.

``FileBlobStore`` keeps each artifact as a file under ``$MCPEXEC_HOME/artifacts/<run id>/``,
written to a temporary name and renamed, so a reader never sees half a file; machines share it
only through a shared directory. ``PostgresBlobStore`` (``mcpexec.store._pg_blobs``) keeps the
bytes in the PostgreSQL database, readable from every machine on it. Neither ever holds a whole
artifact in memory: writes and reads go ``CHUNK`` bytes at a time.
"""

from __future__ import annotations

import abc
import hashlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

import anyio.to_thread

CHUNK = 1024 * 1024
_NAME_MAX = 255  # bytes in one file name (ext4, tmpfs, xfs, btrfs)


class BlobStore(abc.ABC):
    @abc.abstractmethod
    async def put(self, run_id: str, name: str, file: BinaryIO, max_bytes: int) -> tuple[int, str]:
        """Copy at most ``max_bytes`` from ``file``; returns (size, sha256 hex)."""

    @abc.abstractmethod
    async def exists(self, run_id: str, name: str) -> bool:
        """Whether the blob is there (a zero-byte blob is)."""

    @abc.abstractmethod
    def read(
        self, run_id: str, name: str, offset: int = 0, limit: int | None = None
    ) -> AsyncIterator[bytes]:
        """The blob's bytes from ``offset``, at most ``limit`` of them, in chunks of at most
        ``CHUNK`` bytes; nothing when the blob is absent or ``offset`` is past its end."""

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
                    chunk = file.read(min(CHUNK, max_bytes - size))
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

    async def exists(self, run_id: str, name: str) -> bool:
        return self._file(run_id, name).is_file()

    async def read(
        self, run_id: str, name: str, offset: int = 0, limit: int | None = None
    ) -> AsyncIterator[bytes]:
        try:
            handle = await anyio.to_thread.run_sync(open, self._file(run_id, name), "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return
        with handle:
            await anyio.to_thread.run_sync(handle.seek, offset)
            left = limit
            while left is None or left > 0:
                want = CHUNK if left is None else min(CHUNK, left)
                chunk = await anyio.to_thread.run_sync(handle.read, want)
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk

    async def delete_run(self, run_id: str) -> None:
        folder = self.root / quote(run_id, safe="")
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(folder, ignore_errors=True))
