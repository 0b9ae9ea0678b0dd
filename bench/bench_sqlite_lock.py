"""SQLite under another writer's lock: how long a read takes while the lock is held (WAL: it
should not wait at all) and how long after the lock's release a waiting write completes.

These were timed assertions in tests/contract/test_sqlite.py (a read < 1 s, a write waiting
≥ 0.25 s for a 0.3 s lock); the test now asserts the order of events and the timing lives here.

Usage::

    .venv/bin/python bench/bench_sqlite_lock.py            # 20 rounds
    .venv/bin/python bench/bench_sqlite_lock.py --n 5 --hold-s 0.1
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from mcpexec.models import DEFAULT_RETRY, ExecSpec
from mcpexec.store.base import NewRun
from mcpexec.store.sqlite import SqliteStore


def _new(run_id: str) -> NewRun:
    return NewRun(
        id=run_id,
        tenant="default",
        spec=ExecSpec(command=["true"]),
        retry=DEFAULT_RETRY,
        priority=0,
        labels={},
        created_at=datetime.now(UTC),
    )


async def one_round(store: SqliteStore, db: Path, n: int, hold_s: float) -> tuple[float, float]:
    held, release = threading.Event(), threading.Event()
    released_at: list[float] = []

    def hold() -> None:
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        held.set()
        release.wait(hold_s)
        conn.execute("COMMIT")
        released_at.append(time.perf_counter())
        conn.close()

    thread = threading.Thread(target=hold)
    thread.start()
    await asyncio.to_thread(held.wait, 10)
    started = time.perf_counter()
    await store.get_run("seed")
    read_s = time.perf_counter() - started
    await store.enqueue(_new(f"w{n}"))
    write_done = time.perf_counter()
    thread.join()
    return read_s, write_done - released_at[0]


async def main(rounds: int, hold_s: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "mcpexec.db"
        store = SqliteStore(db)
        await store.open()
        await store.enqueue(_new("seed"))
        reads, waits = [], []
        for n in range(rounds):
            read_s, after_release_s = await one_round(store, db, n, hold_s)
            reads.append(read_s * 1000)
            waits.append(after_release_s * 1000)
        await store.close()
    print(f"{rounds} rounds, the other writer holds the lock {hold_s * 1000:.0f} ms")
    print(_line("read while locked", reads))
    print(_line("write done after release", waits))


def _line(label: str, values_ms: list[float]) -> str:
    median, worst = statistics.median(values_ms), max(values_ms)
    return f"{label + ':':27} median {median:7.2f} ms, max {worst:7.2f} ms"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--hold-s", type=float, default=0.3)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.hold_s))
