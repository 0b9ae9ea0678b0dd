"""SQLite only: several processes on one file, durability across reopen, file permissions,
migrations, and the busy-lock behaviour."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mcpexec.errors import StoreError
from mcpexec.models import Stream
from mcpexec.store import _sqlite_db
from mcpexec.store._migrations import load_migrations
from mcpexec.store.sqlite import SqliteStore

from .contract_helpers import OK, claim_one, new_run, t

pytestmark = pytest.mark.anyio
HERE = Path(__file__).parent


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "mcpexec.db"


def _spawn(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


async def test_several_processes_can_open_a_new_file_at_once(db: Path) -> None:
    script = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from mcpexec.store.sqlite import SqliteStore\n"
        "async def main():\n"
        "    s = SqliteStore(Path(sys.argv[1])); await s.open(); await s.close()\n"
        "asyncio.run(main())\n"
    )
    procs = [_spawn("-c", script, str(db)) for _ in range(4)]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(load_migrations("sqlite"))
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_data_survives_close_and_reopen(db: Path) -> None:
    store = SqliteStore(db)
    await store.open()
    await store.open()  # idempotent
    await store.enqueue(new_run("done"))
    await store.enqueue(new_run("busy", key="k"))
    await claim_one(store, "w1", t(0))
    await claim_one(store, "w1", t(0))
    await store.append_log("busy", 1, "w1", Stream.STDOUT, b"partial output")
    await store.finish_attempt("done", 1, "w1", OK, t(1), None)
    before = [await store.get_run(i) for i in ("done", "busy")]
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreError):
        await store.get_run("done")

    again = SqliteStore(db)
    await again.open()
    assert [await again.get_run(i) for i in ("done", "busy")] == before
    assert await again.read_log("busy", Stream.STDOUT, 0, 100) == (b"partial output", 14)
    assert await again.finish_attempt("busy", 1, "w1", OK, t(2), None) is not None
    _, created = await again.enqueue(new_run("other", key="k"))
    assert not created
    newer, _ = await again.enqueue(new_run("later"))
    assert newer.seq == 3
    await again.close()


async def test_file_is_private(db: Path) -> None:
    store = SqliteStore(db)
    await store.open()
    await store.enqueue(new_run())
    for path in db.parent.iterdir():  # the database and its -wal/-shm files
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    await store.close()


async def test_a_newer_schema_is_refused(db: Path) -> None:
    store = SqliteStore(db)
    await store.open()
    await store.close()
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 999")
    with pytest.raises(StoreError, match="newer"):
        await SqliteStore(db).open()


@contextlib.contextmanager
def write_lock_held(db: Path, insert: str | None = None) -> Iterator[threading.Event]:
    """Another connection holds the write lock until the yielded event is set (or the end);
    with ``insert`` it also writes a pending run of that id in the same transaction."""
    release, held = threading.Event(), threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        if insert is not None:
            conn.execute(
                "INSERT INTO runs (id, tenant, status, priority, spec, retry, created_at,"
                " available_at) VALUES (?, 'default', 'pending', 0, ?, ?, 0, 0)",
                (insert, json.dumps({"command": ["true"]}), json.dumps({})),
            )
        held.set()
        release.wait(30)
        conn.execute("COMMIT")
        conn.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(10)
    try:
        yield release
    finally:
        release.set()
        thread.join()


async def test_reads_are_not_blocked_by_a_writer_and_writes_wait(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events, not times (how long each takes is bench/bench_sqlite_lock.py): a read completes
    while another connection holds the write lock; a write that meets the lock waits for it and
    then succeeds, ordered after the holder's own write."""
    store = SqliteStore(db)
    await store.open()
    await store.enqueue(new_run("a"))
    write_started = threading.Event()
    transaction = store._db._transaction

    def spy(begin: str, fn: Any) -> Any:
        if begin == "BEGIN IMMEDIATE":
            write_started.set()
        return transaction(begin, fn)

    monkeypatch.setattr(store._db, "_transaction", spy)
    with write_lock_held(db, insert="held") as release:
        # WAL: the reader does not wait for the writer, which still holds the lock.
        assert await asyncio.wait_for(store.get_run("a"), 10) is not None
        assert not release.is_set()
        writing = asyncio.ensure_future(store.enqueue(new_run("b")))
        assert await asyncio.to_thread(write_started.wait, 10)
        assert not writing.done()  # it cannot finish: the lock is still held
        release.set()
        run, created = await asyncio.wait_for(writing, 30)
    assert created
    held = await store.get_run("held")
    assert held is not None
    assert run.seq > held.seq  # committed after the holder's transaction
    await store.close()


async def test_busy_beyond_the_retries_is_a_store_error(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sqlite_db, "BUSY_TIMEOUT_MS", 20)
    monkeypatch.setattr(_sqlite_db, "BUSY_RETRIES", 2)
    monkeypatch.setattr(_sqlite_db, "BUSY_BACKOFF_S", 0.001)
    store = SqliteStore(db)
    await store.open()
    with write_lock_held(db), pytest.raises(StoreError, match="locked"):
        await store.enqueue(new_run("x"))
    assert await store.get_run("x") is None  # the operation did not happen
    run, _ = await store.enqueue(new_run("x"))  # and the store still works
    assert run.id == "x"
    await store.close()


async def test_migration_2_keeps_attempts_of_a_version_1_database(db: Path) -> None:
    """A database created by 0001 alone gains the attempt isolation/limits columns; attempts
    recorded before read back with ``None`` for both."""
    [first, *_] = load_migrations("sqlite")
    assert first.number == 1
    conn = sqlite3.connect(db)
    conn.executescript(first.sql)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO runs (id, tenant, status, priority, spec, retry, created_at, available_at,"
        " attempts) VALUES ('old', 'default', 'completed', 0, ?, '{}', 0, 0, 1)",
        (json.dumps({"command": ["true"]}),),
    )
    conn.execute(
        "INSERT INTO attempts (run_id, number, worker_id, status, started_at, finished_at)"
        " VALUES ('old', 1, 'w0', 'completed', 0, 1)"
    )
    conn.commit()
    conn.close()
    store = SqliteStore(db)
    await store.open()
    try:
        [attempt] = await store.attempts("old")
        assert (attempt.isolation, attempt.limits) == (None, None)
    finally:
        await store.close()


async def test_migration_5_counts_the_storage_a_version_2_database_already_holds(
    db: Path,
) -> None:
    """The storage counters start from what is stored: logs and artifacts per tenant."""
    first, second, *_ = load_migrations("sqlite")
    conn = sqlite3.connect(db)
    conn.executescript(first.sql)
    conn.executescript(second.sql)
    conn.execute("PRAGMA user_version = 2")
    for run_id, tenant in (("a", "t1"), ("b", "t1"), ("c", "t2")):
        conn.execute(
            "INSERT INTO runs (id, tenant, status, priority, spec, retry, created_at,"
            " available_at, attempts) VALUES (?, ?, 'completed', 0, ?, '{}', 0, 0, 1)",
            (run_id, tenant, json.dumps({"command": ["true"]})),
        )
    logs = [("a", "stdout", 0, b"12345"), ("a", "stderr", 0, b"67"), ("c", "stdout", 0, b"x")]
    conn.executemany(
        "INSERT INTO logs (run_id, stream, byte_offset, attempt, data) VALUES (?, ?, ?, 1, ?)",
        logs,
    )
    conn.execute(
        "INSERT INTO artifacts (run_id, name, attempt, size, sha256, created_at)"
        " VALUES ('b', 'f', 1, 100, '', 0)"
    )
    conn.commit()
    conn.close()
    store = SqliteStore(db)
    await store.open()
    try:
        assert await store.storage_used("t1") == 107
        assert await store.storage_used("t2") == 1
        assert await store.storage_used() == 108
    finally:
        await store.close()


async def test_migration_9_counts_the_runs_a_version_8_database_already_holds(db: Path) -> None:
    """The run counters start from the runs stored before them (then the triggers keep them)."""
    conn = sqlite3.connect(db)
    for migration in load_migrations("sqlite")[:8]:
        conn.executescript(migration.sql)
    conn.execute("PRAGMA user_version = 8")
    for run_id, tenant, status in (("a", "t1", "completed"), ("b", "t1", "failed"),
                                   ("c", "t2", "completed"), ("d", "t2", "pending")):  # fmt: skip
        conn.execute(
            "INSERT INTO runs (id, tenant, status, priority, spec, retry, created_at,"
            " available_at, attempts) VALUES (?, ?, ?, 0, ?, '{}', 0, 0, 1)",
            (run_id, tenant, status, json.dumps({"command": ["true"]})),
        )
    conn.commit()
    conn.close()
    store = SqliteStore(db)
    await store.open()
    try:
        assert (await store.stats()).by_status == {
            "pending": 1, "running": 0, "completed": 2, "failed": 1, "cancelled": 0,
        }  # fmt: skip
        assert (await store.stats("t1")).by_status["failed"] == 1
        await store.request_cancel("d", datetime.now(UTC))
        assert (await store.stats("t2")).by_status["cancelled"] == 1
        assert (await store.stats("t2")).by_status["pending"] == 0
    finally:
        await store.close()
