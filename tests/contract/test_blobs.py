"""Contract: every ``BlobStore`` (artifact bytes) behaves the same.

The directory store on ``tmp_path`` and the PostgreSQL one on a fresh schema of the session's
throwaway database (``tests/pg_server.py``: skipped without a server, failed under ``CI=true``).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from mcpexec.app import App, Principal
from mcpexec.executor.fake import FakeExecutor
from mcpexec.models import RunRequest, RunStatus
from mcpexec.reaper import Reaper, ReaperOptions
from mcpexec.settings import Settings
from mcpexec.store import _pg_blobs
from mcpexec.store.blobs import CHUNK, BlobStore, FileBlobStore
from mcpexec.store.postgres import PostgresStore
from mcpexec.store.url import open_store
from pg_server import fresh_schema

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["directory", "postgres"])
async def blobs(
    request: pytest.FixtureRequest, tmp_path: Path, anyio_backend: str
) -> AsyncIterator[BlobStore]:
    if request.param == "directory":
        yield FileBlobStore(tmp_path / "artifacts")
        return

    with fresh_schema() as url:
        store = open_store(url)
        assert isinstance(store, PostgresStore)
        await store.open()
        try:
            yield store.blob_store()
        finally:
            await store.close()


class CountingFile(io.BytesIO):
    """A file that remembers the largest read asked of it."""

    largest = 0

    def read(self, size: int | None = -1, /) -> bytes:
        self.largest = max(self.largest, size if size is not None and size >= 0 else 1 << 62)
        return super().read(size)


async def read_all(blobs: BlobStore, run_id: str, name: str, **kw: int) -> list[bytes]:
    return [chunk async for chunk in blobs.read(run_id, name, **kw)]


async def test_write_then_read_back(blobs: BlobStore) -> None:
    data = os.urandom(1000)
    size, sha = await blobs.put("r1", "out/a.bin", io.BytesIO(data), 10_000)
    assert size == 1000
    assert sha == hashlib.sha256(data).hexdigest()
    assert await blobs.exists("r1", "out/a.bin")
    assert b"".join(await read_all(blobs, "r1", "out/a.bin")) == data


async def test_large_blobs_stream_in_bounded_chunks(blobs: BlobStore) -> None:
    data = os.urandom(3 * CHUNK + 12345)
    file = CountingFile(data)
    assert (await blobs.put("r1", "big", file, 10 * CHUNK))[0] == len(data)
    assert file.largest <= CHUNK  # the write never asked for more than a chunk
    chunks = await read_all(blobs, "r1", "big")
    assert len(chunks) == 4
    assert all(len(c) <= CHUNK for c in chunks)
    assert b"".join(chunks) == data


async def test_ranges(blobs: BlobStore) -> None:
    data = os.urandom(2 * CHUNK + 7)
    await blobs.put("r1", "x", io.BytesIO(data), len(data))
    for offset, limit in ((0, 10), (5, CHUNK), (CHUNK - 3, 6), (CHUNK, CHUNK + 7), (2 * CHUNK, 50)):
        got = b"".join(await read_all(blobs, "r1", "x", offset=offset, limit=limit))
        assert got == data[offset : offset + limit], (offset, limit)
    assert b"".join(await read_all(blobs, "r1", "x", offset=CHUNK + 1)) == data[CHUNK + 1 :]
    assert await read_all(blobs, "r1", "x", offset=len(data)) == []
    assert await read_all(blobs, "r1", "x", offset=len(data) + CHUNK) == []
    assert await read_all(blobs, "r1", "x", limit=0) == []


async def test_the_cap_cuts_the_write(blobs: BlobStore) -> None:
    data = os.urandom(CHUNK + 100)
    size, _ = await blobs.put("r1", "capped", io.BytesIO(data), CHUNK + 1)
    assert size == CHUNK + 1
    assert b"".join(await read_all(blobs, "r1", "capped")) == data[: CHUNK + 1]


async def test_empty_blob_exists(blobs: BlobStore) -> None:
    assert await blobs.put("r1", "empty", io.BytesIO(b""), 100) == (
        0,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    )
    assert await blobs.exists("r1", "empty")
    assert await read_all(blobs, "r1", "empty") == []


async def test_overwrite_replaces_every_chunk(blobs: BlobStore) -> None:
    await blobs.put("r1", "a", io.BytesIO(b"x" * (2 * CHUNK)), 4 * CHUNK)
    await blobs.put("r1", "a", io.BytesIO(b"short"), 4 * CHUNK)
    assert b"".join(await read_all(blobs, "r1", "a")) == b"short"


async def test_two_writers_of_one_blob_never_mix(blobs: BlobStore) -> None:
    first, second = b"1" * (3 * CHUNK), b"2" * (2 * CHUNK + 5)
    await asyncio.gather(
        blobs.put("r1", "a", io.BytesIO(first), 4 * CHUNK),
        blobs.put("r1", "a", io.BytesIO(second), 4 * CHUNK),
    )
    assert b"".join(await read_all(blobs, "r1", "a")) in (first, second)


async def test_missing(blobs: BlobStore) -> None:
    assert not await blobs.exists("nope", "a")
    assert await read_all(blobs, "nope", "a") == []
    await blobs.put("r1", "a", io.BytesIO(b"1"), 10)
    assert not await blobs.exists("r1", "b")
    assert not await blobs.exists("r2", "a")


async def test_delete_run_removes_its_blobs_only(blobs: BlobStore) -> None:
    await blobs.put("r1", "a", io.BytesIO(os.urandom(3 * CHUNK)), 4 * CHUNK)
    await blobs.put("r1", "b/c", io.BytesIO(b"c"), 10)
    await blobs.put("r2", "a", io.BytesIO(b"keep"), 10)
    await blobs.delete_run("r1")
    assert not await blobs.exists("r1", "a")
    assert not await blobs.exists("r1", "b/c")
    assert await read_all(blobs, "r1", "a") == []
    assert b"".join(await read_all(blobs, "r2", "a")) == b"keep"
    await blobs.delete_run("r1")  # idempotent
    await blobs.delete_run("never")


async def test_postgres_deletes_in_batches_and_leaves_no_rows(tmp_path: Path) -> None:

    with fresh_schema() as url:
        store = open_store(url)
        assert isinstance(store, PostgresStore)
        await store.open()
        try:
            blobs = store.blob_store()
            chunks = _pg_blobs._DELETE_BATCH * 2 + 1
            # Many small-chunk rows without writing gigabytes: a cap of one chunk each.
            for i in range(chunks):
                await blobs.put("r1", f"n{i}", io.BytesIO(b"z"), 1)
            await blobs.delete_run("r1")
            async with await psycopg.AsyncConnection.connect(url) as conn:
                cur = await conn.execute("SELECT count(*) FROM artifact_chunks")
                assert await cur.fetchone() == (0,)
        finally:
            await store.close()


async def test_retention_purge_deletes_a_runs_chunks_on_postgres(tmp_path: Path) -> None:

    admin = Principal("t0", "test", "admin", "default")
    with fresh_schema() as url:
        settings = Settings(home=tmp_path, retention_days=1e-9, database_url=url)
        store = open_store(url)
        assert isinstance(store, PostgresStore)
        blobs = store.blob_store()
        app = App(settings, store, FakeExecutor(), blobs)
        await app.open()
        await app.start_background(workers=1, reaper=False)
        try:
            run, _ = await app.submit(RunRequest.model_validate({"command": ["echo"]}), admin)
            assert (await app.wait(run.id, admin, 5)).status == RunStatus.COMPLETED
            await blobs.put(run.id, "a", io.BytesIO(os.urandom(CHUNK + 1)), 2 * CHUNK)
            await blobs.put("other-run", "a", io.BytesIO(b"keep"), 10)
            options = ReaperOptions.from_settings(settings)
            assert await Reaper(store, blobs, app.events, options).purge() == 1
            assert not await blobs.exists(run.id, "a")
            assert await blobs.exists("other-run", "a")
        finally:
            await app.close()
