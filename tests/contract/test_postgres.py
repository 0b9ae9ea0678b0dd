"""PostgreSQL only: the schema is the SQLite one, migrations are safe with several processes and
refuse a newer database, wake-ups cross store objects (LISTEN/NOTIFY) and survive a dropped
listener, and dead pooled connections are replaced without the caller noticing."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mcpexec.errors import Conflict, StoreError, StoreUnavailable
from mcpexec.models import FailureKind, Run, RunStatus
from mcpexec.store._migrations import load_migrations
from mcpexec.store._pg_db import Conn
from mcpexec.store._pg_tenancy import enqueue_run
from mcpexec.store.postgres import PostgresStore
from mcpexec.store.sqlite import SqliteStore
from mcpexec.store.url import open_store
from pg_server import fresh_schema, session_database

from .contract_helpers import LEASE, OK, T0, failed, new_run, t

pytestmark = pytest.mark.anyio
BOUND_S = 10.0


@pytest.fixture
def url() -> Iterator[str]:
    with fresh_schema() as schema_url:
        yield schema_url


@pytest.fixture
async def store(url: str) -> AsyncIterator[PostgresStore]:
    opened = open_store(url)
    assert isinstance(opened, PostgresStore)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def _terminate(url: str, pid: int | None = None) -> int:
    """End mcpexec's server connections on the test database (only ``pid`` when given)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'mcpexec' "
            "AND pid <> pg_backend_pid() AND (%(pid)s::int IS NULL OR pid = %(pid)s)",
            {"pid": pid},
        ).fetchall()
    return len(rows)


def _pg_columns(url: str) -> dict[str, set[str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema()"
        ).fetchall()
    tables: dict[str, set[str]] = {}
    for table, column in rows:
        tables.setdefault(table, set()).add(column)
    return tables


async def test_the_schema_has_the_tables_and_columns_of_the_sqlite_one(
    store: PostgresStore, url: str, tmp_path: Path
) -> None:
    lite = SqliteStore(tmp_path / "mcpexec.db")
    await lite.open()
    await lite.close()
    with sqlite3.connect(tmp_path / "mcpexec.db") as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        expected = {n: {r[1] for r in conn.execute(f"PRAGMA table_info({n})")} for n in names}
    found = _pg_columns(url)
    assert found.pop("schema_version") == {"version"}  # PostgreSQL's user_version
    # PostgresBlobStore's artifact bytes (postgres 0010; SQLite keeps artifacts as files).
    assert found.pop("artifact_chunks") == {"run_id", "name", "seq", "data"}
    assert found == expected


async def test_migrations_at_once_from_several_stores_apply_once(url: str) -> None:
    stores = [open_store(url) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    await asyncio.gather(*(s.close() for s in stores))
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [
            (len(load_migrations("postgres")),)
        ]


async def test_a_newer_schema_is_refused(store: PostgresStore, url: str) -> None:
    await store.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE schema_version SET version = version + 1")
    with pytest.raises(StoreError, match="newer than this mcpexec"):
        await open_store(url).open()


async def test_an_unreachable_server_is_one_line_naming_the_setting() -> None:
    bad = open_store("postgresql://postgres@127.0.0.1:1/nothing")
    with pytest.raises(StoreUnavailable) as caught:
        await bad.open()
    message = caught.value.message
    assert "MCPEXEC_DATABASE_URL" in message
    assert "127.0.0.1:1" in message
    assert "\n" not in message


async def test_an_enqueue_wakes_a_store_in_another_process_role(
    store: PostgresStore, url: str
) -> None:
    other = open_store(url)
    await other.open()
    try:
        assert await other.wait_for_work(0.01) is False
        waiter = asyncio.ensure_future(other.wait_for_work(BOUND_S * 3))
        await asyncio.sleep(0)
        await store.enqueue(new_run())
        assert await asyncio.wait_for(waiter, BOUND_S) is True
        # the writer is woken once, by itself, not again by its own NOTIFY
        assert await store.wait_for_work(BOUND_S) is True
        assert await store.wait_for_work(0.2) is False
    finally:
        await other.close()


async def test_the_listener_reconnects_and_resubscribes(store: PostgresStore, url: str) -> None:
    listener = open_store(url)
    assert isinstance(listener, PostgresStore)
    await listener.open()
    try:
        pid = listener._db.listener_pid
        assert pid is not None
        assert _terminate(url, pid) == 1
        # The reconnect wakes once (a notification may have been missed meanwhile) ...
        assert await asyncio.wait_for(listener.wait_for_work(BOUND_S * 3), BOUND_S) is True
        await asyncio.wait_for(listener._db.listening.wait(), BOUND_S)
        assert listener._db.listener_pid not in (None, pid)
        # ... and LISTEN is in force again on the new connection.
        waiter = asyncio.ensure_future(listener.wait_for_work(BOUND_S * 3))
        await asyncio.sleep(0)
        await store.enqueue(new_run())
        assert await asyncio.wait_for(waiter, BOUND_S) is True
    finally:
        await listener.close()


async def test_dead_pooled_connections_are_replaced(store: PostgresStore, url: str) -> None:
    run, _ = await store.enqueue(new_run())
    assert _terminate(url) >= 2  # the pool's connection(s) and the listener
    # BEGIN fails on each dead connection: nothing happened, so it is retried on a new one.
    assert await store.get_run(run.id) == run
    again, created = await store.enqueue(new_run())
    assert created
    assert again.seq > run.seq


async def test_a_server_gone_mid_operation_is_store_unavailable(
    store: PostgresStore, url: str
) -> None:
    await store.enqueue(new_run("first"))

    async def stall(conn: Conn) -> None:
        pid = conn.info.backend_pid
        await asyncio.to_thread(_terminate, url, pid)
        await conn.execute("SELECT 1")

    with pytest.raises(StoreUnavailable) as caught:
        await store._db.run(stall)
    assert caught.value.code == "store_unavailable"
    assert caught.value.details["retry_after_s"] >= 1
    assert await store.get_run("first") is not None


async def test_a_submit_retried_after_a_lost_connection_answers_its_committed_run(
    store: PostgresStore,
) -> None:
    """The submit is one autocommit statement (mcpexec_enqueue): a connection lost after it
    was sent leaves its outcome unknown, so the retry (``retried=True``) answers the run if
    the first try committed, and inserts it otherwise; a first try still refuses a taken id."""
    new = new_run("lost-answer")
    first, created = await store.enqueue(new)
    assert created

    async def retry(conn: Conn, retried: bool) -> tuple[Run, bool]:
        return await enqueue_run(conn, store._q, new, store._db.origin, retried=True)

    again, created = await store._db.statement(retry)
    assert created
    assert again == first
    with pytest.raises(Conflict):
        await store.enqueue(new)
    fresh = new_run("never-committed")
    inserted, created = await store._db.statement(
        lambda conn, retried: enqueue_run(conn, store._q, fresh, store._db.origin, True)
    )
    assert created
    assert await store.get_run(fresh.id) == inserted
    audit = [e.target for e in await store.list_audit(None, 100) if e.action == "submit"]
    assert sorted(audit) == ["lost-answer", "never-committed"]  # one entry each


def _answer_lost_after_first_try(store: PostgresStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every autocommit statement runs, commits, loses its answer and is retried."""
    real = store._db.statement

    async def statement(fn: Any) -> Any:
        async def first_then_retry(conn: Conn, retried: bool) -> Any:
            await fn(conn, False)  # sent and committed; the answer never arrives
            return await fn(conn, True)

        return await real(first_then_retry)

    monkeypatch.setattr(store._db, "statement", statement)


async def test_a_finish_retried_after_a_lost_connection_knows_its_own_from_the_reapers(
    store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.enqueue(new_run("mine"))
    await store.enqueue(new_run("reaped"))
    claims = await store.claim("w1", 2, T0, T0 + LEASE)
    assert sorted(c.run.id for c in claims) == ["mine", "reaped"]
    # The reaper finished "reaped" (its lease ran out) before our late finish arrived.
    lost = failed(FailureKind.WORKER_LOST, "stopped heartbeating")
    reaped = await store.finish_attempt(
        "reaped", 1, "w1", lost, t(40), retry_at=t(41), lease_expired_before=t(40)
    )
    assert reaped is not None
    assert reaped.status == RunStatus.PENDING
    _answer_lost_after_first_try(store, monkeypatch)
    done = await store.finish_attempt("mine", 1, "w1", OK, t(5), None)
    assert done is not None  # its own finish, committed by the first try
    assert done.status == RunStatus.COMPLETED
    late = await store.finish_attempt("reaped", 1, "w1", OK, t(50), None)
    assert late is None  # not ours: the reaper's finish, same run, attempt and worker
    run = await store.get_run("reaped")
    assert run is not None
    assert run.status == RunStatus.PENDING


def test_the_session_database_is_a_throwaway_one() -> None:
    assert "/mcpexec_test_" in session_database()


_WAITER = """
import asyncio, sys, time
from mcpexec.store.url import open_store

async def main(url, ready):
    store = open_store(url)
    await store.open()
    open(ready, "w").close()
    woken = await store.wait_for_work(60)
    print(woken, flush=True)
    await store.close()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_a_submit_wakes_a_waiting_store_in_another_process(
    store: PostgresStore, url: str, tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _WAITER,
        url,
        str(ready),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():  # another process's start-up: no event to await
            assert proc.returncode is None, await proc.communicate()
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        await store.enqueue(new_run())
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err
    assert out.decode().strip() == "True"  # woken by the NOTIFY, not by its 60 s timeout
