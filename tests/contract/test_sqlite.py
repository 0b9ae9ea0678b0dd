"""SQLite only: several processes on one file, durability across reopen, file permissions,
migrations, and the busy-lock behaviour."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from contract_helpers import OK, T0, claim_one, new_run, t

from mcpexec.errors import StoreError
from mcpexec.models import Stream
from mcpexec.store import _sqlite_db
from mcpexec.store.sqlite import SqliteStore

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


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 10])
async def test_two_processes_never_claim_the_same_run(db: Path, tmp_path: Path, batch: int) -> None:
    store = SqliteStore(db)
    await store.open()
    ids = {(await store.enqueue(new_run(f"r{i:03}", created_at=T0)))[0].id for i in range(500)}
    await store.close()

    go = tmp_path / "go"
    procs = []
    for name in ("wa", "wb"):
        ready = tmp_path / f"{name}.ready"
        procs.append(
            (
                ready,
                _spawn(
                    str(HERE / "sqlite_claimer.py"), str(db), name, str(ready), str(go), str(batch)
                ),
            )
        )
    deadline = time.monotonic() + 60
    while not all(ready.exists() for ready, _ in procs):
        assert time.monotonic() < deadline, "claimers did not start"
        assert all(p.poll() is None for _, p in procs), [p.communicate() for _, p in procs]
        await anyio.sleep(0.01)
    started = time.perf_counter()
    go.touch()
    results, errors = [], []
    for _, proc in procs:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
        errors.append(err)
    elapsed = time.perf_counter() - started

    claimed = results[0] + results[1]
    counts = (len(results[0]), len(results[1]))
    assert len(claimed) == len(set(claimed)) == 500, (counts, errors)  # each exactly once
    assert set(claimed) == ids
    if batch == 1:
        # 500 one-run transactions take long enough that both processes really compete; with
        # bigger batches a descheduled process may legitimately find the queue drained.
        assert min(counts) > 0, (counts, errors)
    print(f"batch={batch}: 500 claims+finishes by 2 processes {counts} in {elapsed:.2f}s")

    store = SqliteStore(db)
    await store.open()
    assert (await store.stats()).by_status["completed"] == 500
    attempts = [await store.attempts(i) for i in ("r000", "r250", "r499")]
    assert all(len(a) == 1 for a in attempts)
    await store.close()


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
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(
            _sqlite_db.load_migrations()
        )
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
def write_lock_held(db: Path) -> Iterator[threading.Event]:
    """Another connection holds the write lock until the yielded event is set (or the end)."""
    release, held = threading.Event(), threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
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


async def test_reads_are_not_blocked_by_a_writer_and_writes_wait(db: Path) -> None:
    store = SqliteStore(db)
    await store.open()
    await store.enqueue(new_run("a"))
    with write_lock_held(db) as release:
        started = time.monotonic()
        assert await store.get_run("a") is not None  # WAL: readers never wait
        assert time.monotonic() - started < 1
        threading.Timer(0.3, release.set).start()
        run, _ = await store.enqueue(new_run("b"))  # waits for the lock, then succeeds
        assert run.id == "b"
        assert time.monotonic() - started >= 0.25
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
    [(number, first), *_] = _sqlite_db.load_migrations()
    assert number == 1
    conn = sqlite3.connect(db)
    conn.executescript(first)
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
