"""Reads at scale (issue 17, "history at scale"): a store holding N finished runs (default
1,000,000) on SQLite or PostgreSQL, then every list, filter and count the API, the metrics and
the dashboard make, each timed ``--samples`` times (p50/p95). The baseline is the count the
store made before migration 0009 (``SELECT status, COUNT(*) … GROUP BY status`` over runs),
timed in the same run on the same database.

The history: one run a second up to now, four tenants' worth split 3:1 between ``default`` and
``t2``, statuses completed/failed/cancelled 3:1:1, every tenth labelled ``bench=tenth``, every
hundredth of task ``nightly``, every fiftieth a tool run ``fs.echo`` and owned by ``alice``.

Usage: .venv/bin/python bench/bench_history.py [--runs N] [--samples K] [--dialect sqlite|postgres]
       [--pg postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sqlite3
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from mcpexec.models import RunFilter, RunStatus
from mcpexec.store.base import RunCursor, Store, rollup_bucket
from mcpexec.store.postgres import PostgresStore
from mcpexec.store.sqlite import SqliteStore

STATUSES = ("completed", "completed", "completed", "failed", "cancelled")
COLUMNS = ("id", "tenant", "status", "priority", "spec", "retry", "labels", "created_at",
           "available_at", "started_at", "finished_at", "attempts", "task", "owner",
           "tool")  # fmt: skip
S = 1_000_000


def history(n: int, t0_us: int) -> Iterator[tuple[object, ...]]:
    """The rows of ``n`` finished runs, one a second from ``t0_us``, in the order of COLUMNS."""
    spec = json.dumps({"command": ["true"]})
    tool = json.dumps({"tool": {"server": "fs", "name": "echo", "arguments": {}}})
    for i in range(n):
        created = t0_us + i * S
        started = created + 200_000
        yield (
            f"{i:032x}", "default" if i % 4 else "t2", STATUSES[i % len(STATUSES)], 0,
            tool if i % 50 == 0 else spec, "{}",
            json.dumps({"bench": "tenth"}) if i % 10 == 0 else "{}",
            created, created, started, started + (i % 30) * 100_000, 1,
            "nightly" if i % 100 == 0 else None,
            "alice" if i % 50 == 0 else None,
            "fs.echo" if i % 50 == 0 else None,
        )  # fmt: skip


def rollup_rows(n: int, t0_us: int) -> list[tuple[str, int, str, int, int]]:
    """What the finish trigger (migration 0013) would have counted for ``history``'s runs."""
    counts: Counter[tuple[str, int, str, int]] = Counter()
    for row in history(n, t0_us):
        tenant, status = str(row[1]), str(row[2])
        created, started, finished = int(row[7]), int(row[9]), int(row[10])  # type: ignore[call-overload]
        hour = finished - finished % 3_600_000_000
        counts[(tenant, hour, status, 0)] += 1
        counts[(tenant, hour, "duration", rollup_bucket(finished - started))] += 1
        counts[(tenant, hour, "wait", rollup_bucket(started - created))] += 1
    return [(t, h, s, b, c) for (t, h, s, b), c in counts.items()]


def fill_sqlite(path: Path, n: int, t0_us: int) -> None:
    """``n`` runs into the migrated store at ``path`` (the insert triggers keep the counts and
    labels as they would; the rollup, kept by the finish trigger, is written directly)."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous = OFF")
    marks = ", ".join("?" for _ in COLUMNS)
    conn.executemany(f"INSERT INTO runs ({', '.join(COLUMNS)}) VALUES ({marks})", history(n, t0_us))
    conn.executemany("INSERT INTO run_rollup VALUES (?, ?, ?, ?, ?)", rollup_rows(n, t0_us))
    conn.execute("DELETE FROM events")  # the insert trigger logged a million submits
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()


def fill_postgres(url: str, n: int, t0_us: int) -> None:
    """``n`` runs by COPY with triggers off (as a bulk load would), then the counts and labels
    the triggers keep, computed by the same SQL as the migrations' back-fill."""
    with psycopg.connect(url) as conn:
        conn.execute("SET session_replication_role = replica")
        with conn.cursor().copy(f"COPY runs ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in history(n, t0_us):
                copy.write_row(row)
        conn.execute("DELETE FROM run_counts")
        conn.execute(
            "INSERT INTO run_counts SELECT tenant, status, COUNT(*) FROM runs GROUP BY 1, 2"
        )
        conn.execute(
            "INSERT INTO run_labels SELECT l.key, l.value, runs.seq FROM runs,"
            " jsonb_each_text(runs.labels::jsonb) AS l"
        )
        with conn.cursor().copy("COPY run_rollup FROM STDIN") as copy:
            for rollup in rollup_rows(n, t0_us):
                copy.write_row(rollup)
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


async def timed(call: Callable[[], Awaitable[object]], k: int) -> tuple[float, float]:
    for _ in range(3):
        await call()
    samples = []
    for _ in range(k):
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), statistics.quantiles(samples, n=20)[18]


def cases(store: Store, n: int, now: datetime) -> list[tuple[str, Callable[[], Awaitable[object]]]]:
    """Every list, filter and count of the API (``GET /api/v1/runs`` parameters), the metrics
    and the dashboard, on the history ``history`` made."""
    last, hour = f"{n - 1:032x}", timedelta(hours=1)
    week_ago = now - timedelta(days=7)
    second_page = RunCursor(seq=n - 50)

    def ls(f: RunFilter, cursor: RunCursor | None = None) -> Callable[[], Awaitable[object]]:
        return lambda: store.list_runs(f, 50, cursor)

    st = RunStatus
    return [
        ("stats() (counters)", store.stats),
        ("stats('t2') (counters)", lambda: store.stats("t2")),
        ("run_history, last 24 h (overview)", lambda: store.run_history(now - 24 * hour)),
        ("run_history('t2'), last 7 days", lambda: store.run_history(week_ago, "t2")),
        ("get_run", lambda: store.get_run(last)),
        ("list, default page of 50", ls(RunFilter())),
        ("list, second page (cursor)", ls(RunFilter(), second_page)),
        ("list, tenant t2", ls(RunFilter(tenant="t2"))),
        ("list, status failed", ls(RunFilter(status=frozenset({st.FAILED})))),
        ("list, status failed|cancelled",
         ls(RunFilter(status=frozenset({st.FAILED, st.CANCELLED})))),
        ("list, status running (none)", ls(RunFilter(status=frozenset({st.RUNNING})))),
        ("list, tenant t2 + status pending (none)",
         ls(RunFilter(tenant="t2", status=frozenset({st.PENDING})))),
        ("list, label bench=tenth", ls(RunFilter(labels={"bench": "tenth"}))),
        ("list, label matching nothing", ls(RunFilter(labels={"bench": "nobody"}))),
        ("list, task nightly", ls(RunFilter(task="nightly"))),
        ("list, task matching nothing", ls(RunFilter(task="nobody"))),
        ("list, owner alice", ls(RunFilter(owner="alice"))),
        ("list, tool fs.echo", ls(RunFilter(tool="fs.echo"))),
        ("list, tool matching nothing", ls(RunFilter(tool="fs.nothing"))),
        ("list, window: the last hour", ls(RunFilter(created_after=now - hour))),
        ("list, window: a week, a week ago",
         ls(RunFilter(created_after=week_ago - 7 * 24 * hour, created_before=week_ago))),
        ("list, window matching nothing",
         ls(RunFilter(created_after=now - 9000 * 24 * hour, created_before=now - 900 * 24 * hour))),
        ("list, window a week ago + status failed",
         ls(RunFilter(created_before=week_ago, status=frozenset({st.FAILED})))),
    ]  # fmt: skip


async def measure(store: Store, baseline: Callable[[], object], n: int, k: int) -> None:
    async def scan_count() -> object:
        return await asyncio.to_thread(baseline)

    base50, base95 = await timed(scan_count, k)
    print(f"{'baseline: COUNT(*) GROUP BY status':<44} p50 {base50:8.2f} ms  p95 {base95:8.2f} ms")
    for name, call in cases(store, n, datetime.now(UTC)):
        p50, p95 = await timed(call, k)
        print(f"{name:<44} p50 {p50:8.2f} ms  p95 {p95:8.2f} ms  x{p95 / base95:.4f} baseline p95")


async def main(args: argparse.Namespace) -> None:
    n, k = args.runs, args.samples
    t0_us = int(time.time() * S) - n * S
    started = time.perf_counter()
    if args.dialect == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "mcpexec.db"
            store = SqliteStore(path)
            await store.open()
            await asyncio.to_thread(fill_sqlite, path, n, t0_us)
            print(f"sqlite: {n} finished runs ({time.perf_counter() - started:.0f} s to fill), "
                  f"load {os.getloadavg()[0]:.1f}, {k} samples each\n")  # fmt: skip
            scan = sqlite3.connect(path, check_same_thread=False)
            grouped = "SELECT status, COUNT(*) FROM runs GROUP BY status"
            try:
                await measure(store, lambda: scan.execute(grouped).fetchall(), n, k)
            finally:
                scan.close()
                await store.close()
        return
    name = f"mcpexec_bench_{secrets.token_hex(5)}"
    url = urlsplit(args.pg)._replace(path=f"/{name}").geturl()
    with psycopg.connect(args.pg, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        pg_store = PostgresStore(url)
        await pg_store.open()
        await asyncio.to_thread(fill_postgres, url, n, t0_us)
        print(f"postgres: {n} finished runs ({time.perf_counter() - started:.0f} s to fill), "
              f"load {os.getloadavg()[0]:.1f}, {k} samples each\n")  # fmt: skip
        with psycopg.connect(url, autocommit=True) as pg_scan:

            def count() -> object:
                return pg_scan.execute(
                    "SELECT status, COUNT(*) FROM runs GROUP BY status"
                ).fetchall()

            try:
                await measure(pg_store, count, n, k)
            finally:
                await pg_store.close()
    finally:
        with psycopg.connect(args.pg, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--dialect", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    asyncio.run(main(parser.parse_args()))
