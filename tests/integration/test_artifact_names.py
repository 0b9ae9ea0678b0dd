"""Artifact names never break a run (issue 8, item 3): a name over 255 bytes once the blob store
encodes it is stored, a name that is not UTF-8 is refused with a note, the files after them are
still collected, the run stays successful, and no message shows a server path."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path
from typing import BinaryIO

import pytest

from executor_helpers import RecordingSink
from integration.test_executor import execute, started
from mcpexec.store.blobs import FileBlobStore

pytestmark = pytest.mark.timeout(30)

LONG = "é" * 50 + ".txt"  # 104 bytes in UTF-8, 304 once percent-encoded: over NAME_MAX
NESTED = "deep/" + "x" * 250  # every component fits the workdir; the joined encoded name not
SHELL = f"""
    cd "$MCPEXEC_OUTPUT_DIR"
    echo long > '{LONG}'
    mkdir deep && echo nested > 'deep/{"x" * 250}'
    echo bad > "$(printf 'bad\\377.txt')"
    echo after > z_after.txt
"""


class BlobSink(RecordingSink):
    """Stores artifacts in a real ``FileBlobStore``, as the worker does."""

    def __init__(self, blobs: FileBlobStore) -> None:
        super().__init__()
        self.blobs = blobs

    async def artifact(self, name: str, file: BinaryIO, size: int) -> None:
        await self.blobs.put("run-1", name, file, size)
        self.artifacts[name] = b""


def test_long_and_undecodable_names_do_not_fail_the_run(tmp_path: Path) -> None:
    blobs = FileBlobStore(tmp_path / "home" / "artifacts")

    async def main() -> None:
        async with started(tmp_path) as ex:
            result, _sink = await execute(ex, {"shell": SHELL}, sink=BlobSink(blobs))
        assert result.succeeded, result
        assert sorted(result.artifacts) == sorted([LONG, NESTED, "z_after.txt"])
        assert result.refused_artifacts == ["bad\\xff.txt"]
        assert any("bad" in n and "not valid UTF-8" in n for n in result.notes), result.notes
        for name, body in ((LONG, b"long\n"), (NESTED, b"nested\n"), ("z_after.txt", b"after\n")):
            assert b"".join([c async for c in blobs.read("run-1", name)]) == body
        assert not any(str(tmp_path) in n for n in result.notes)

    asyncio.run(main())


class RefusingSink(RecordingSink):
    """A blob store that rejects one name with the error a file system gives, path included."""

    async def artifact(self, name: str, file: BinaryIO, size: int) -> None:
        if name == "a.txt":
            path = "/srv/mcpexec-home/artifacts/run-1/a.txt"
            raise OSError(errno.ENAMETOOLONG, "File name too long", path)
        await super().artifact(name, file, size)


def test_a_name_the_blob_store_rejects_is_skipped_with_a_note(tmp_path: Path) -> None:
    shell = 'cd "$MCPEXEC_OUTPUT_DIR"; echo a > a.txt; echo b > b.txt'

    async def main() -> None:
        async with started(tmp_path) as ex:
            result, sink = await execute(ex, {"shell": shell}, sink=RefusingSink())
        assert result.succeeded, result
        assert result.artifacts == ["b.txt"]
        assert sink.artifacts == {"b.txt": b"b\n"}
        assert result.refused_artifacts == ["a.txt"]
        assert any("'a.txt'" in n and "File name too long" in n for n in result.notes)
        assert not any("/srv/" in n for n in result.notes), result.notes

    asyncio.run(main())


def test_blob_store_keeps_long_names_apart(tmp_path: Path) -> None:
    """Long names map to hashed files: distinct names never share a blob."""
    import io

    blobs = FileBlobStore(tmp_path)

    async def main() -> None:
        names = ["é" * 200 + "1", "é" * 200 + "2", "x" * 255, "x" * 254 + "/"]
        for i, name in enumerate(names):
            await blobs.put("r", name, io.BytesIO(str(i).encode()), 10)
        for i, name in enumerate(names):
            assert b"".join([c async for c in blobs.read("r", name)]) == str(i).encode()

    asyncio.run(main())
