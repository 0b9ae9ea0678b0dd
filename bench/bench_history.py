"""Reads at scale (issue 17, "history at scale"): a SQLite store holding N finished runs (default
1,000,000), then the store calls the API, the metrics and the dashboard make, each timed
``--samples`` times (p50/p95). The baseline is the count the store made before migration 0009
(``SELECT status, COUNT(*) … GROUP BY status`` over runs), timed in the same run on the same file.

Usage: .venv/bin/python bench/bench_history.py [--runs N] [--samples K]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mcpexec.models import RunFilter
from mcpexec.store.sqlite import SqliteStore

STATUSES = ("completed", "completed", "completed", "failed", "cancelled")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def fill(path: Path, n: int) -> None:
    """``n`` finished runs, every tenth labelled, two tenants, one per second from T0."""
    spec = json.dumps({"command": ["true"]})
    t0 = int(T0.timestamp() * 1_000_000)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous = OFF")
    rows = (
        (
            f"{i:032x}",
            "default" if i % 4 else "t2",
            STATUSES[i % len(STATUSES)],
            spec,
            json.dumps({"bench": "tenth"}) if i % 10 == 0 else "{}",
            t0 + i * 1_000_000,
        )
        for i in range(n)
    )
    conn.executemany(
        "INSERT INTO runs (id, tenant, status, priority, spec, retry, labels, created_at,"
        " available_at, finished_at, attempts) VALUES (?, ?, ?, 0, ?, '{}', ?, ?, 0, 0, 1)",
        rows,
    )
    conn.commit()
    conn.close()


async def timed(call: Callable[[], Awaitable[object]], k: int) -> tuple[float, float]:
    for _ in range(3):
        await call()
    samples = []
    for _ in range(k):
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), statistics.quantiles(samples, n=20)[18]


async def main(n: int, k: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mcpexec.db"
        store = SqliteStore(path)
        await store.open()
        started = time.perf_counter()
        await asyncio.to_thread(fill, path, n)
        print(f"store: {n} finished runs ({time.perf_counter() - started:.0f} s to fill), "
              f"load {os.getloadavg()[0]:.1f}, {k} samples each\n")  # fmt: skip
        scan = sqlite3.connect(path)

        async def scan_count() -> object:
            return scan.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall()

        base50, base95 = await timed(scan_count, k)
        print(
            f"{'baseline: COUNT(*) GROUP BY status':<44} p50 {base50:8.2f} ms  p95 {base95:8.2f} ms"
        )
        last = f"{n - 1:032x}"
        empty_window = RunFilter(created_after=T0 - timedelta(days=2), created_before=T0)
        cases: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("stats() (counters)", store.stats),
            ("stats('t2') (counters)", lambda: store.stats("t2")),
            ("get_run", lambda: store.get_run(last)),
            ("list_runs, default page of 50", lambda: store.list_runs(RunFilter(), 50, None)),
            (
                "list_runs, label filter",
                lambda: store.list_runs(RunFilter(labels={"bench": "tenth"}), 50, None),
            ),
            (
                "list_runs, time window matching nothing",
                lambda: store.list_runs(empty_window, 50, None),
            ),
        ]
        for name, call in cases:
            p50, p95 = await timed(call, k)
            print(
                f"{name:<44} p50 {p50:8.2f} ms  p95 {p95:8.2f} ms  x{p95 / base95:.4f} baseline p95"
            )
        scan.close()
        await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=50)
    opts = parser.parse_args()
    asyncio.run(main(opts.runs, opts.samples))
