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

``--history`` measures the store instead (no HTTP, one process): the claim at 1M rows of
history, with and without a backlog of runs waiting for a worker label, and the dead tuples of
``runs``/``attempts`` after a steady-load soak of ``--soak-s`` seconds (autovacuum on, the
server's defaults).

Usage::

    .venv/bin/python bench/bench_postgres.py            # N=1000 per configuration
    .venv/bin/python bench/bench_postgres.py --quick    # N=300
    .venv/bin/python bench/bench_postgres.py --history  # 1M rows of history, 300 s soak
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
from datetime import UTC, datetime, timedelta
from typing import Any
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


# -- the store at 1M rows of history (--history) -------------------------------------------------
HISTORY_TEMPLATE = "bench-template"


def _columns(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_name = 'runs' AND column_name NOT IN ('seq', 'id', 'idempotency_key') "
        "ORDER BY ordinal_position"
    ).fetchall()
    return [r[0] for r in rows]


def fill_history(url: str, rows: int, pending: int, labelled: int) -> None:
    """``rows`` finished runs (copies of a real one, one attempt each), then ``labelled`` pending
    runs asking for ``gpu`` at a higher priority than ``pending`` unlabelled ones: the worst
    case for a worker without labels, whose claim must not walk the labelled ones."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")  # no event-log triggers
        cols = _columns(conn)
        listed = ", ".join(cols)
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            conn.execute(
                f"INSERT INTO runs (id, {listed}) SELECT 'h' || g, {listed} "
                f"FROM runs, generate_series({start}, {start + n - 1}) AS g "
                "WHERE runs.id = %s",
                [HISTORY_TEMPLATE],
            )
        conn.execute(
            "INSERT INTO attempts (run_id, number, worker_id, status, started_at, finished_at) "
            "SELECT id, 1, 'w', 'completed', created_at, created_at FROM runs "
            "WHERE id LIKE 'h%'"
        )
        overrides = {
            "status": "'pending'",
            "started_at": "NULL",
            "finished_at": "NULL",
            "attempts": "0",
            "exit_code": "NULL",
            "worker_id": "NULL",
        }
        for prefix, count, prio, labels in (
            ("p", pending, 0, "[]"),
            ("g", labelled, 10, '["gpu"]'),
        ):
            values = {**overrides, "priority": str(prio), "worker_labels": f"'{labels}'"}
            exprs = ", ".join(values.get(c, c) for c in cols)
            conn.execute(
                f"INSERT INTO runs (id, {listed}) SELECT '{prefix}' || g, {exprs} "
                f"FROM runs, generate_series(1, {count}) AS g WHERE runs.id = %s",
                [HISTORY_TEMPLATE],
            )
        conn.execute("ANALYZE runs")
        conn.execute("ANALYZE attempts")


async def _time_claims(store: Any, n: int, labels: frozenset[str]) -> tuple[float, float, int]:
    """p50/p99 (ms) of ``n`` claims of one run each (then finished, as a worker does)."""
    from mcpexec.store.base import AttemptOutcome, ClaimLimits

    limits = ClaimLimits(worker_labels=labels)
    times, claimed = [], 0
    for _ in range(n):
        now = datetime.now(UTC)
        started = time.perf_counter()
        claims = await store.claim("bench", 1, now, now + timedelta(seconds=30), limits)
        times.append((time.perf_counter() - started) * 1000)
        for c in claims:
            claimed += 1
            await store.finish_attempt(
                c.run.id, c.attempt, "bench", AttemptOutcome(succeeded=True, exit_code=0), now, None
            )
    return percentile(times, 50), percentile(times, 99), claimed


async def _template(store: Any) -> None:
    from mcpexec.models import DEFAULT_RETRY, ExecSpec
    from mcpexec.store.base import AttemptOutcome, NewRun

    now = datetime.now(UTC)
    new = NewRun(
        id=HISTORY_TEMPLATE, tenant="default", spec=ExecSpec(command=["true"]),
        retry=DEFAULT_RETRY, priority=0, labels={}, created_at=now,
    )  # fmt: skip
    await store.enqueue(new)
    [claim] = await store.claim("bench", 1, now, now + timedelta(seconds=30))
    outcome = AttemptOutcome(succeeded=True, exit_code=0)
    await store.finish_attempt(claim.run.id, claim.attempt, "bench", outcome, now, None)


def _dead(url: str) -> dict[str, tuple[int, int, int]]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT relname, n_live_tup, n_dead_tup, autovacuum_count FROM pg_stat_user_tables "
            "WHERE relname IN ('runs', 'attempts', 'events') ORDER BY relname"
        ).fetchall()
    return {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows}


async def _soak(store: Any, url: str, seconds: float, rate: float) -> list[str]:
    """Submit, claim, finish at ``rate`` runs/s for ``seconds``; dead tuples every minute."""
    from mcpexec.models import DEFAULT_RETRY, ExecSpec
    from mcpexec.store.base import AttemptOutcome, NewRun

    lines, done = [], 0
    start = time.monotonic()
    next_report = start
    while (elapsed := time.monotonic() - start) < seconds:
        if time.monotonic() >= next_report:
            dead = _dead(url)
            lines.append(
                f"  t={elapsed:5.0f}s  runs {done:6d}  "
                + "  ".join(f"{t}: live {v[0]} dead {v[1]} autovac {v[2]}" for t, v in dead.items())
            )
            next_report += 60
        now = datetime.now(UTC)
        new = NewRun(
            id=f"s{done}", tenant="default", spec=ExecSpec(command=["true"]),
            retry=DEFAULT_RETRY, priority=0, labels={}, created_at=now,
        )  # fmt: skip
        await store.enqueue(new)
        claims = await store.claim("bench", 1, now, now + timedelta(seconds=30))
        for c in claims:
            lease = now + timedelta(seconds=30)
            await store.heartbeat("bench", [(c.run.id, c.attempt)], now, lease)
            outcome = AttemptOutcome(succeeded=True, exit_code=0)
            await store.finish_attempt(c.run.id, c.attempt, "bench", outcome, now, None)
        done += 1
        await asyncio.sleep(max(done / rate - (time.monotonic() - start), 0))  # the rate
    dead = _dead(url)
    lines.append(
        f"  t={time.monotonic() - start:5.0f}s  runs {done:6d}  "
        + "  ".join(f"{t}: live {v[0]} dead {v[1]} autovac {v[2]}" for t, v in dead.items())
    )
    return lines


async def history(args: argparse.Namespace) -> None:
    from mcpexec.store.postgres import PostgresStore

    with Database(args.pg) as db:
        store = PostgresStore(db.url)
        await store.open()
        try:
            await _template(store)
            started = time.monotonic()
            fill_history(db.url, args.history_rows, pending=2000, labelled=20_000)
            print(
                f"history: {args.history_rows} finished runs (+1 attempt each), 20000 pending "
                f"runs asking for 'gpu' at priority 10, 2000 unlabelled pending at priority 0 "
                f"(filled in {time.monotonic() - started:.0f}s)\n"
            )
            print(f"{'claim of one run (then finished), 300 each':58} {'p50':>8} {'p99':>8}")
            for name, labels in (
                ("worker without labels (skips the 20000 'gpu' runs)", frozenset()),
                ("worker --labels gpu,cuda (takes the 'gpu' runs)", frozenset({"gpu", "cuda"})),
            ):
                p50, p99, n = await _time_claims(store, 300, labels)
                print(f"{name:58} {p50:6.2f}ms {p99:6.2f}ms" + ("" if n == 300 else f" ({n})"))
            with psycopg.connect(db.url, autocommit=True) as conn:
                conn.execute("DROP INDEX runs_tenant_ready_any")
                conn.execute("ANALYZE runs")
            p50, p99, _ = await _time_claims(store, 300, frozenset())
            print(f"{'  the same without the partial index runs_tenant_ready_any':58} "
                  f"{p50:6.2f}ms {p99:6.2f}ms")  # fmt: skip
            with psycopg.connect(db.url, autocommit=True) as conn:
                conn.execute(
                    "CREATE INDEX runs_tenant_ready_any ON runs (tenant, priority DESC, seq) "
                    "WHERE status = 'pending' AND worker_labels = '[]'"
                )
                conn.execute("DELETE FROM runs WHERE status = 'pending' AND id LIKE 'g%'")
                conn.execute("VACUUM ANALYZE runs")
            p50, p99, _ = await _time_claims(store, 300, frozenset())
            print(f"{'worker without labels, no labelled run pending':58} "
                  f"{p50:6.2f}ms {p99:6.2f}ms")  # fmt: skip
            with psycopg.connect(db.url, autocommit=True) as conn:
                conn.execute("DELETE FROM runs WHERE status = 'pending'")
                conn.execute("VACUUM ANALYZE runs")
            print(
                f"\nsteady load: submit + claim + heartbeat + finish at {args.soak_rate:g} runs/s "
                f"for {args.soak_s:g}s on top of the history "
                "(autovacuum at 1 % of the table, migration 0014)"
            )
            for line in await _soak(store, db.url, args.soak_s, args.soak_rate):
                print(line)
        finally:
            await store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="runs per throughput measurement")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--latency-n", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="N=300, 100 warm-up, 50 idle runs")
    parser.add_argument("--pg", default=DEFAULT_PG, help="a PostgreSQL server (admin database)")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--history", action="store_true", help="the store at 1M rows of history")
    parser.add_argument("--history-rows", type=int, default=1_000_000)
    parser.add_argument("--soak-s", type=float, default=300.0, help="steady-load soak (seconds)")
    parser.add_argument("--soak-rate", type=float, default=50.0, help="runs/s in the soak")
    args = parser.parse_args()
    if args.history:
        print(
            f"mcpexec PostgreSQL store at scale — {platform.node()} · {os.cpu_count()} CPUs · "
            f"{datetime.now():%Y-%m-%d %H:%M} · load {os.getloadavg()[0]:.1f}"
        )
        asyncio.run(history(args))
        return 0
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
