"""The benchmark job on SQLite vs PostgreSQL, with the workers in the API process or in 1, 2 and 4
separate ``mcpexec worker`` processes, and Procrastinate (the Python PostgreSQL job queue, with
LISTEN/NOTIFY) on the same job, all in one run; ratios to the SQLite row and to Procrastinate's
(measured before and after mcpexec's rows; the ratio is to the mean of the two).

The job of every row is a ``sh -c 'echo hello'`` subprocess whose stdout and exit code are stored
as the job's result, 4 at a time per worker process.

Each configuration gets a fresh ``MCPEXEC_HOME`` (and, on PostgreSQL, a fresh throwaway database
``mcpexec_bench_<random>`` on ``--pg`` (default: the loopback server, user postgres), dropped at
the end), a warm-up, then:

- throughput: N runs POSTed by 8 concurrent submitters, from the first submit until all are
  terminal (``bench_engine.submit_and_drain``; ``--client``: ``bare``, the default, is
  ``timing.BareHttp``, which adds next to no CPU of its own on the two shared cores, as
  Procrastinate's in-process ``defer_async`` does; ``httpx`` costs ~1 ms of CPU per request);
- submit→start at idle: sequential submit + long-poll, ``started_at - created_at`` of each run
  (p50/p99): on PostgreSQL with separate workers this is the LISTEN/NOTIFY wake-up across
  processes plus the claim.

Procrastinate is never a dependency of mcpexec: it runs in its own venv (``--procrastinate-python``,
default ``/tmp/procvenv/bin/python``; made with ``uv venv /tmp/procvenv && VIRTUAL_ENV=/tmp/procvenv
uv pip install procrastinate 'psycopg[binary]'``; without it the row is skipped with a note). The
module ``PROCRASTINATE_APP`` is written to a temporary directory and run with that python, on its
own throwaway database: one ``worker`` process (``run_worker(concurrency=4)``, its defaults
otherwise: LISTEN/NOTIFY on) and a driver that defers with 8 concurrent ``defer_async`` callers
and counts jobs done by a NOTIFY from a trigger on Procrastinate's status change to
``succeeded``; the task stores stdout, stderr and exit code in a table (Procrastinate keeps no
results). Its submit→start is its ``started`` event minus its ``deferred`` event, jobs deferred
one at a time at idle.

``--history`` measures the store instead (no HTTP, one process): the claim at 1M rows of
history, with and without a backlog of runs waiting for a worker label, and the dead tuples of
``runs``/``attempts`` after a steady-load soak of ``--soak-s`` seconds (autovacuum on, the
server's defaults).

Usage::

    .venv/bin/python bench/bench_postgres.py            # N=1000 per configuration
    .venv/bin/python bench/bench_postgres.py --quick    # N=300
    .venv/bin/python bench/bench_postgres.py --no-procrastinate   # mcpexec's rows only
    .venv/bin/python bench/bench_postgres.py --history  # 1M rows of history, 300 s soak
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import shlex
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from bench_engine import CLIENT, MCPEXEC, Api, Serve, idle_latency, percentile, submit_and_drain

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
JOB = ["sh", "-c", "echo hello"]  # the job of every row, mcpexec's and Procrastinate's
PROCRASTINATE_PYTHON = "/tmp/procvenv/bin/python"
PROCRASTINATE_INSTALL = (
    "uv venv /tmp/procvenv && "
    "VIRTUAL_ENV=/tmp/procvenv uv pip install procrastinate 'psycopg[binary]'"
)


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
    Setup("postgres, serve --no-workers + 4 worker processes", True, 0, 4),
]


class JobApi(Api):
    """The benchmark's job instead of bench_engine's ``true``."""

    async def submit(self) -> dict[str, Any]:
        return await self._json("POST", "/api/v1/runs", json={"command": JOB})


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


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM (a graceful stop), then SIGKILL of the session of any still running after 20 s."""
    for proc in workers:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in workers:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


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
        api = JobApi(serve, connections=16, client=args.client)
        try:
            await wait_registered(api, 1)
            await wait_registered(api, setup.worker_processes)
            await submit_and_drain(api, args.warmup, 8, args.timeout)
            latency = await idle_latency(api, args.latency_n, args.timeout)
            batch = await submit_and_drain(api, args.n, 8, args.timeout)
        finally:
            await api.close()
    finally:
        stop_workers(workers)
        serve.stop()
        if db is not None:
            db.__exit__()
    return {
        "runs_per_s": batch.runs_per_s,
        "submit_per_s": args.n / batch.submit_seconds,
        "failed": batch.failed,
        "start_p50": percentile(latency.start_ms, 50),
        "start_p99": percentile(latency.start_ms, 99),
    }


# -- Procrastinate on the same job ---------------------------------------------------------------
# The Procrastinate side runs in its own venv (``--procrastinate-python``), never in mcpexec's:
# this module is written to a temporary directory and run with that python. ``drive`` applies
# Procrastinate's schema to the throwaway database, starts ``worker`` (concurrency 4, LISTEN/NOTIFY
# on, the defaults otherwise) as a separate process, and prints one JSON line of figures.
PROCRASTINATE_APP = r"""
import asyncio, json, os, signal, subprocess, sys, time

import psycopg
from procrastinate import App, PsycopgConnector

JOB = json.loads(os.environ["BENCH_JOB"])
app = App(connector=PsycopgConnector(conninfo=os.environ["BENCH_DB"]))


@app.task(name="job", pass_context=True)
async def job(context):
    # the job: a subprocess, its stdout and exit code stored as the job's result (Procrastinate
    # keeps no task results, so a table of ours does)
    proc = await asyncio.create_subprocess_exec(
        *JOB, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    await app.connector.execute_query_async(
        "INSERT INTO bench_results (job_id, stdout, stderr, exit_code) "
        "VALUES (%(id)s, %(out)s, %(err)s, %(code)s)",
        id=context.job.id, out=out.decode(), err=err.decode(), code=proc.returncode,
    )


# A job is done when Procrastinate has marked it succeeded (or failed): a trigger tells the driver.
DONE_TRIGGER = '''
CREATE FUNCTION bench_done() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bench_done', NEW.id::text);
    RETURN NEW;
END $$;
CREATE TRIGGER bench_done AFTER UPDATE OF status ON procrastinate_jobs FOR EACH ROW
    WHEN (NEW.status IN ('succeeded', 'failed') AND OLD.status <> NEW.status)
    EXECUTE FUNCTION bench_done();
'''


def percentile(values, p):
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def handshake(mark):
    # With BENCH_HANDSHAKE set, a line on stdout and wait for one on stdin: the parent reads
    # the processes' CPU times at exactly this point.
    if os.environ.get("BENCH_HANDSHAKE"):
        print(mark, flush=True)
        sys.stdin.readline()


async def wait_done(listener, count, timeout_s):
    got, deadline = 0, time.monotonic() + timeout_s
    while got < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"{count - got} jobs not done within {timeout_s:g}s")
        async for _ in listener.notifies(timeout=left, stop_after=count - got):
            got += 1


async def defer_and_drain(listener, n, deferrers, timeout_s):
    queue = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def deferrer():
        while not queue.empty():
            queue.get_nowait()
            await job.defer_async()

    started = time.perf_counter()
    done = asyncio.ensure_future(wait_done(listener, n, timeout_s))
    await asyncio.gather(*(deferrer() for _ in range(deferrers)))
    deferred = time.perf_counter() - started
    await done
    return time.perf_counter() - started, deferred


async def drive(n, warmup, latency_n, timeout_s):
    db = os.environ["BENCH_DB"]
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        await app.connector.execute_query_async(
            "CREATE TABLE bench_results (job_id bigint PRIMARY KEY, stdout text, stderr text, "
            "exit_code int, stored_at timestamptz NOT NULL DEFAULT now())"
        )
        await app.connector.execute_query_async(DONE_TRIGGER)
        worker = subprocess.Popen([sys.executable, __file__, "worker"], env=os.environ)
        try:
            listener = await psycopg.AsyncConnection.connect(db, autocommit=True)
            await listener.execute("LISTEN bench_done")
            deadline = time.monotonic() + 30
            while not await (
                await listener.execute("SELECT 1 FROM procrastinate_workers")
            ).fetchone():
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise RuntimeError("the Procrastinate worker did not register")
                await asyncio.sleep(0.05)  # another process's start-up: nothing to await
            await defer_and_drain(listener, warmup, 8, timeout_s)
            ids = []
            for _ in range(latency_n):  # at idle: one job at a time, deferred then awaited
                ids.append(await job.defer_async())
                await wait_done(listener, 1, 30)
            rows = await (await listener.execute(
                "SELECT extract(epoch FROM s.at - d.at) * 1000 FROM procrastinate_events d "
                "JOIN procrastinate_events s ON s.job_id = d.job_id AND s.type = 'started' "
                "WHERE d.type = 'deferred' AND d.job_id = ANY(%s)", [ids]
            )).fetchall()
            start_ms = [float(r[0]) for r in rows]
            handshake("timed")  # bench_cpu_split reads every process's CPU around this phase
            seconds, deferred = await defer_and_drain(listener, n, 8, timeout_s)
            handshake("done")
            bad = await (await listener.execute(
                "SELECT (SELECT count(*) FROM bench_results WHERE exit_code <> 0 "
                "OR stdout <> E'hello\\n'), "
                "(SELECT count(*) FROM procrastinate_jobs WHERE status <> 'succeeded'), "
                "(SELECT count(*) FROM bench_results)"
            )).fetchone()
            expected = warmup + latency_n + n
            await listener.close()
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(10)
    print(json.dumps({
        "runs_per_s": n / seconds, "submit_per_s": n / deferred,
        "failed": int(bad[0]) + int(bad[1]) + expected - int(bad[2]),
        "start_p50": percentile(start_ms, 50), "start_p99": percentile(start_ms, 99),
    }))


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        app.run_worker(concurrency=4)
    else:
        n, warmup, latency_n, timeout_s = sys.argv[2:6]
        asyncio.run(drive(int(n), int(warmup), int(latency_n), float(timeout_s)))
"""


def procrastinate_version(python: str) -> str | None:
    """Procrastinate's version in ``python``'s environment, None when it is not installed."""
    if not os.path.exists(python):
        return None
    probe = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('procrastinate'))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


@contextlib.contextmanager
def procrastinate_driver(args: argparse.Namespace) -> Iterator[tuple[list[str], dict[str, str]]]:
    """A throwaway database and ``PROCRASTINATE_APP`` written out: the driver's command (to
    which its counts are appended) and environment, both gone when the block ends."""
    with Database(args.pg) as db, tempfile.TemporaryDirectory(prefix="procbench-") as tmp:
        module = Path(tmp) / "procbench_app.py"
        module.write_text(PROCRASTINATE_APP)
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": tmp,
            "BENCH_DB": db.url,
            "BENCH_JOB": json.dumps(JOB),
        }
        yield [args.procrastinate_python, str(module), "drive"], env


def measure_procrastinate(args: argparse.Namespace) -> dict[str, float]:
    with procrastinate_driver(args) as (command, env):
        counts = [str(args.n), str(args.warmup), str(args.latency_n), str(args.timeout)]
        done = subprocess.run(
            [*command, *counts],
            env=env,
            capture_output=True,
            text=True,
            timeout=args.timeout * 3 + 120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the Procrastinate run failed:\n{done.stdout}{done.stderr[-3000:]}")
        result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
        return result


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
    parser.add_argument(
        "--procrastinate-python",
        default=PROCRASTINATE_PYTHON,
        help="a python whose environment has procrastinate and psycopg (never mcpexec's venv)",
    )
    parser.add_argument("--no-procrastinate", action="store_true", help="mcpexec's rows only")
    parser.add_argument(
        "--client", choices=("bare", "httpx"), default=CLIENT, help="the submitters' HTTP client"
    )
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
    version = None if args.no_procrastinate else procrastinate_version(args.procrastinate_python)
    print(
        f"mcpexec PostgreSQL benchmark — {platform.node()} · {os.cpu_count()} CPUs · "
        f"Python {platform.python_version()} · {datetime.now():%Y-%m-%d %H:%M}"
    )
    print(
        f"N={args.n} jobs of `{shlex.join(JOB)}` per configuration (stdout and exit code "
        f"stored), 8 concurrent submitters ({args.client} HTTP client), {args.latency_n} idle "
        f"jobs, MCPEXEC_SANDBOX=none, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    # Procrastinate before and after mcpexec's rows, the mean its yardstick: on this shared
    # machine its rate moved by a quarter between two runs minutes apart (docs/benchmarks.md).
    before = measure_procrastinate(args) if version is not None else None
    rows = [(setup.name, asyncio.run(measure(setup, args))) for setup in SETUPS]
    procrastinate: float | None = None
    if before is not None:
        after = measure_procrastinate(args)
        label = f"procrastinate {version}, 1 worker --concurrency 4"
        rows += [(f"{label}, before", before), (f"{label}, after", after)]
        procrastinate = (before["runs_per_s"] + after["runs_per_s"]) / 2
    elif not args.no_procrastinate:
        print(
            f"Procrastinate skipped: not in {args.procrastinate_python} ({PROCRASTINATE_INSTALL})"
        )
    print(f"load after the run {os.getloadavg()[0]:.1f}\n")
    base = rows[0][1]["runs_per_s"]
    header = (
        f"{'configuration':58} {'jobs/s':>8} {'vs sqlite':>9}"
        + (f" {'vs procr':>8}" if procrastinate else "")
        + f" {'submit/s':>9} {'start p50':>10} {'p99':>8}"
    )
    print(header)
    print("-" * len(header))
    for name, r in rows:
        print(
            f"{name:58} {r['runs_per_s']:8.0f} {r['runs_per_s'] / base:9.2f}"
            + (f" {r['runs_per_s'] / procrastinate:8.2f}" if procrastinate else "")
            + f" {r['submit_per_s']:9.0f} {r['start_p50']:8.1f}ms {r['start_p99']:6.1f}ms"
            + (f"  ({int(r['failed'])} failed)" if r["failed"] else "")
        )
    print(
        f"\njobs/s from the first submit (mcpexec: POST /api/v1/runs; Procrastinate: defer_async) "
        f"until all are done; vs sqlite: over the SQLite row ({base:.0f} jobs/s)"
        + (
            f", vs procr: over the mean of Procrastinate's two rows ({procrastinate:.0f} jobs/s)"
            if procrastinate
            else ""
        )
        + "; submit/s: N over the time until the last submit returned"
        "; start: submit→start at idle (mcpexec: started_at - created_at; Procrastinate: its "
        "'started' event - its 'deferred' event)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
