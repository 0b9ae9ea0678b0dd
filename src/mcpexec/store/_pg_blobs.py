"""Artifact bytes in PostgreSQL: ``artifact_chunks(run_id, name, seq, data)``, a chunk a row.

Every API node on the database reads what a worker on any machine wrote (no shared directory).
A write replaces the artifact's chunks in ONE transaction, reading the file a chunk at a time,
so a reader sees the old bytes or the new, never half; two writers of one artifact take turns
on a transaction-scoped advisory lock. A read fetches one chunk per statement
(memory stays at one chunk whatever the artifact's size). ``delete_run`` removes a run's chunks
``_DELETE_BATCH`` rows per transaction: short transactions, no long lock, and autovacuum keeps
up with a purge of many gigabytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import BinaryIO

import anyio.to_thread

from mcpexec.store._pg_db import Conn, Database
from mcpexec.store.blobs import CHUNK, BlobStore

_DELETE_BATCH = 64  # chunks (64 MiB at most) per delete transaction

# Two writers of one artifact (a lost worker still writing, its retry) take turns: the second
# replaces every chunk of the first instead of mixing with them.
_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('mcpexec.blob:' || %s || '/' || %s, 0))"
_REPLACE = "DELETE FROM artifact_chunks WHERE run_id = %s AND name = %s"
# %b: the chunk travels in binary (text format would escape every byte).
_INSERT = "INSERT INTO artifact_chunks (run_id, name, seq, data) VALUES (%s, %s, %s, %b)"
_EXISTS = "SELECT 1 FROM artifact_chunks WHERE run_id = %s AND name = %s AND seq = 0"
_CHUNK_AT = (
    "SELECT substring(data FROM %s FOR %s) AS data FROM artifact_chunks "
    "WHERE run_id = %s AND name = %s AND seq = %s"
)
_DELETE_SOME = (
    "DELETE FROM artifact_chunks WHERE ctid = ANY (ARRAY("
    "SELECT ctid FROM artifact_chunks WHERE run_id = %s LIMIT %s))"
)


class PostgresBlobStore(BlobStore):
    """On the database of an open ``PostgresStore`` (it shares the store's connection pool)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(self, run_id: str, name: str, file: BinaryIO, max_bytes: int) -> tuple[int, str]:
        start = await anyio.to_thread.run_sync(file.tell)

        async def tx(conn: Conn) -> tuple[int, str]:
            # A retried transaction (deadlock) starts over from the same place in the file.
            await anyio.to_thread.run_sync(file.seek, start)
            await conn.execute(_LOCK, [run_id, name])
            await conn.execute(_REPLACE, [run_id, name])
            digest, size, seq = hashlib.sha256(), 0, 0
            while True:
                want = min(CHUNK, max_bytes - size)
                chunk = await anyio.to_thread.run_sync(file.read, want) if want > 0 else b""
                if chunk or seq == 0:  # a zero-byte artifact is one empty chunk
                    await conn.execute(_INSERT, [run_id, name, seq, chunk])
                if not chunk:
                    return size, digest.hexdigest()
                digest.update(chunk)
                size += len(chunk)
                seq += 1

        return await self._db.run(tx)

    async def exists(self, run_id: str, name: str) -> bool:
        async def tx(conn: Conn) -> bool:
            return await (await conn.execute(_EXISTS, [run_id, name])).fetchone() is not None

        return await self._db.run(tx)

    async def read(
        self, run_id: str, name: str, offset: int = 0, limit: int | None = None
    ) -> AsyncIterator[bytes]:
        seq, skip = divmod(max(offset, 0), CHUNK)
        left = limit
        while left is None or left > 0:
            want = CHUNK - skip if left is None else min(CHUNK - skip, left)

            async def tx(conn: Conn, seq: int = seq, skip: int = skip, want: int = want) -> bytes:
                args = [skip + 1, want, run_id, name, seq]
                row = await (await conn.execute(_CHUNK_AT, args, binary=True)).fetchone()
                return b"" if row is None else bytes(row["data"])

            chunk = await self._db.run(tx)
            if not chunk:
                return
            if left is not None:
                left -= len(chunk)
            yield chunk
            seq, skip = seq + 1, 0

    async def delete_run(self, run_id: str) -> None:
        async def tx(conn: Conn) -> int:
            return (await conn.execute(_DELETE_SOME, [run_id, _DELETE_BATCH])).rowcount

        while await self._db.run(tx) > 0:
            pass
