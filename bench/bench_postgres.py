"""The engine job on SQLite vs PostgreSQL, with the workers in the API process or in 1 and 2
separate ``mcpexec worker`` processes, all in one run; ratios to the SQLite baseline measured in
the same run.

Each configuration gets a fresh ``MCPEXEC_HOME`` (and, on PostgreSQL, a fresh throwaway database
``mcpexec_bench_<random>`` on ``--pg`` (default: the loopback server, user postgres), dropped at
the end), a warm-up, then:

- throughput: N runs of ``{"command": ["true"]}`` POSTed by 8 concurrent submitters, from the
  first submit until all are terminal (``bench_engine.submit_and_drain``);
- submit→start at idle: sequential submit + long-poll, ``started_at - created_at`` of each run
  (p50/p99): on PostgreSQL with separate workers this is the LISTEN/NOTIFY wake-up across
  processes plus the claim.

Usage::

    .venv/bin/python bench/bench_postgres.py            # N=1000 per configuration
    .venv/bin/python bench/bench_postgres.py --quick    # N=300
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import psycopg
from bench_engine import MCPEXEC, Api, Serve, idle_latency, percentile, submit_and_drain

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True)
class Setup:
    name: str
    postgres: bool
    serve_workers: int  # slots in the API process
    worker_processes: int  # separate `mcpexec worker` processes, 4 slots each


SETUPS = [
    Setup("sqlite, serve --workers 4", False, 4, 0),
    Setup("postgres, serve --workers 4", True, 4, 0),
    Setup("postgres, serve --no-workers + 1 worker process", True, 0, 1),
    Setup("postgres, serve --no-workers + 2 worker processes", True, 0, 2),
]


class Database:
    """A throwaway database on the PostgreSQL server ``admin`` names."""

    def __init__(self, admin: str) -> None:
        self.admin = admin
        self.name = f"mcpexec_bench_{secrets.token_hex(5)}"
        self.url = urlsplit(admin)._replace(path=f"/{self.name}").geturl()

    def __enter__(self) -> Database:
        with psycopg.connect(self.admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        return self

    def __exit__(self, *_: object) -> None:
        with psycopg.connect(self.admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def start_worker(serve: Serve, settings: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {"PATH": os.environ.get("PATH", os.defpath), "MCPEXEC_HOME": str(serve.home)}
    env |= {"HOME": str(serve.home), "MCPEXEC_SANDBOX": "none", **settings}
    log = (serve.home / f"worker-{time.monotonic_ns()}.log").open("wb")
    with log:
        return subprocess.Popen(
            [MCPEXEC, "worker", "--workers", "4"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def wait_registered(api: Api, count: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        body = await api._json("GET", "/api/v1/workers")
        if len(body["workers"]) >= count:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} workers did not register within {timeout_s:g}s")
        await asyncio.sleep(0.05)  # another process's start-up: nothing to await


async def measure(setup: Setup, args: argparse.Namespace) -> dict[str, float]:
    db = Database(args.pg) if setup.postgres else None
    if db is not None:
        db.__enter__()
    settings = {"MCPEXEC_DATABASE_URL": db.url} if db is not None else {}
    serve = Serve(setup.serve_workers, settings={"MCPEXEC_SANDBOX": "none", **settings})
    workers: list[subprocess.Popen[bytes]] = []
    try:
        serve.start()
        workers = [start_worker(serve, settings) for _ in range(setup.worker_processes)]
        api = Api(serve, connections=16)
        try:
            await wait_registered(api, 1)
            await wait_registered(api, setup.worker_processes)
            await submit_and_drain(api, args.warmup, 8, args.timeout)
            latency = await idle_latency(api, args.latency_n, args.timeout)
            batch = await submit_and_drain(api, args.n, 8, args.timeout)
        finally:
            await api.close()
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in workers:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        serve.stop()
        if db is not None:
            db.__exit__()
    return {
        "runs_per_s": batch.runs_per_s,
        "failed": batch.failed,
        "start_p50": percentile(latency.start_ms, 50),
        "start_p99": percentile(latency.start_ms, 99),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="runs per throughput measurement")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--latency-n", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="N=300, 100 warm-up, 50 idle runs")
    parser.add_argument("--pg", default=DEFAULT_PG, help="a PostgreSQL server (admin database)")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    if args.quick:
        args.n, args.warmup, args.latency_n = 300, 100, 50
    print(
        f"mcpexec PostgreSQL benchmark — {platform.node()} · {os.cpu_count()} CPUs · "
        f"Python {platform.python_version()} · {datetime.now():%Y-%m-%d %H:%M}"
    )
    print(
        f"N={args.n} runs of `true` per configuration, 8 HTTP submitters, "
        f"{args.latency_n} idle runs, MCPEXEC_SANDBOX=none, load {os.getloadavg()[0]:.1f}\n"
    )
    results = [(setup, asyncio.run(measure(setup, args))) for setup in SETUPS]
    base = results[0][1]["runs_per_s"]
    header = f"{'configuration':52} {'runs/s':>8} {'ratio':>6} {'start p50':>10} {'p99':>8}"
    print(header)
    print("-" * len(header))
    for setup, r in results:
        print(
            f"{setup.name:52} {r['runs_per_s']:8.0f} {r['runs_per_s'] / base:6.2f} "
            f"{r['start_p50']:8.1f}ms {r['start_p99']:6.1f}ms"
            + (f"  ({int(r['failed'])} failed)" if r["failed"] else "")
        )
    print(f"\nratio: runs/s over the SQLite baseline measured in this run ({base:.0f} runs/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
