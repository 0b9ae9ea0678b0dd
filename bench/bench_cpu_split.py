"""Where the CPU of one job goes, process by process: mcpexec on PostgreSQL (``serve
--no-workers`` + one ``mcpexec worker --workers 4``) against Procrastinate (one worker,
concurrency 4), on bench_postgres's job (``sh -c 'echo hello'``, stdout and exit code stored).

On two cores every process of a run competes for the same CPU, so a queue's rate follows its
total CPU per job, wherever it is spent. Each round runs N jobs per side after a warm-up, as
bench_postgres's throughput row does (8 concurrent submitters), and reads, at the start and the
end of exactly that phase, the machine's busy time (``/proc/stat``: every process, and the
kernel's work for them) and each process's user + system time with that of the children it
reaped (``/proc/PID/stat``). Per job, grouped:

- the submitters: this process's HTTP client (mcpexec), Procrastinate's driver (``defer_async``);
- the API process: ``serve`` (mcpexec only);
- PostgreSQL: every ``postgres`` process;
- the worker's own process;
- the worker's children: mcpexec's spawn helper with the runs it reaped; Procrastinate's worker
  reaps its ``sh`` children itself;
- the rest: busy time no process above accounts for (other processes on the machine).

The sides alternate (``--rounds``, default 2 each): the first of a pair runs ~10 % ahead here.
Procrastinate runs in its own venv, as in bench_postgres (``--procrastinate-python``).

Usage::

    .venv/bin/python bench/bench_cpu_split.py            # N=2000, 2 rounds each
    .venv/bin/python bench/bench_cpu_split.py --n 500 --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import psutil
from bench_engine import Serve, submit_and_drain
from bench_postgres import (
    DEFAULT_PG,
    PROCRASTINATE_PYTHON,
    Database,
    JobApi,
    procrastinate_driver,
    procrastinate_version,
    start_worker,
    stop_workers,
    wait_registered,
)

CLK_TCK = os.sysconf("SC_CLK_TCK")
GROUPS = (
    "the submitters",
    "the API process",
    "PostgreSQL",
    "the worker's own process",
    "the worker's children",
    "the rest",
)


def busy_seconds() -> float:
    """The machine's CPU time not idle (user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLK_TCK


def own(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def with_reaped(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass
class Snapshot:
    busy: float
    groups: dict[str, float] = field(default_factory=dict)


def snapshot(submitter: int, api: int | None, worker: int) -> Snapshot:
    """Every group's CPU seconds now. A process that ended since is not in the second
    snapshot: the ones measured live through the whole phase."""
    groups = dict.fromkeys(GROUPS, 0.0)
    groups["the submitters"] = own(psutil.Process(submitter))
    if api is not None:
        groups["the API process"] = own(psutil.Process(api))
    work = psutil.Process(worker)
    times = work.cpu_times()
    groups["the worker's own process"] = times.user + times.system
    groups["the worker's children"] = (
        times.children_user
        + times.children_system
        + sum(with_reaped(child) for child in _alive(work.children(recursive=True)))
    )
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "postgres":
            try:
                groups["PostgreSQL"] += own(proc)
            except psutil.Error:
                continue
    return Snapshot(busy_seconds(), groups)


def _alive(procs: Iterable[psutil.Process]) -> Iterable[psutil.Process]:
    for proc in procs:
        try:
            proc.cpu_times()
        except psutil.Error:
            continue
        yield proc


@dataclass
class Split:
    side: str
    jobs_per_s: float
    ms: dict[str, float]  # per job, by group
    total_ms: float
    cores: float


def split(side: str, n: int, seconds: float, a: Snapshot, b: Snapshot) -> Split:
    ms = {g: (b.groups[g] - a.groups[g]) / n * 1000 for g in GROUPS if g != "the rest"}
    total = (b.busy - a.busy) / n * 1000
    ms["the rest"] = total - sum(ms.values())
    return Split(side, n / seconds, ms, total, (b.busy - a.busy) / seconds)


async def mcpexec_round(args: argparse.Namespace) -> Split:
    with Database(args.pg) as db:
        settings = {"MCPEXEC_DATABASE_URL": db.url}
        serve = Serve(0, settings={"MCPEXEC_SANDBOX": "none", **settings})
        serve.start()
        workers: list[subprocess.Popen[bytes]] = []
        api: JobApi | None = None
        try:
            worker = start_worker(serve, settings)
            workers.append(worker)
            api = JobApi(serve, connections=16)
            await wait_registered(api, 1)
            await submit_and_drain(api, args.warmup, 8, args.timeout)
            before = snapshot(os.getpid(), serve.pid, worker.pid)
            started = time.perf_counter()
            batch = await submit_and_drain(api, args.n, 8, args.timeout)
            seconds = time.perf_counter() - started
            after = snapshot(os.getpid(), serve.pid, worker.pid)
            if batch.failed:
                raise RuntimeError(f"{batch.failed} runs failed")
        finally:
            if api is not None:
                await api.close()
            stop_workers(workers)
            serve.stop()
    return split("mcpexec", args.n, seconds, before, after)


def procrastinate_round(args: argparse.Namespace) -> Split:
    with procrastinate_driver(args) as (command, env):
        counts = [str(args.n), str(args.warmup), "1", str(args.timeout)]
        driver = subprocess.Popen(
            [*command, *counts],
            env={**env, "BENCH_HANDSHAKE": "1"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert driver.stdin is not None
        assert driver.stdout is not None
        # The reads below wait for the driver's lines: a driver that hangs is killed (its
        # stdout then ends) within bench_postgres's bound on a whole Procrastinate run.
        deadline = threading.Timer(args.timeout * 3 + 120, driver.kill)
        deadline.start()
        try:
            marks: list[tuple[Snapshot, float]] = []
            for expected in ("timed", "done"):
                line = driver.stdout.readline().strip()
                if line != expected:
                    raise RuntimeError(f"the Procrastinate driver said {line!r}, not {expected!r}")
                workers = psutil.Process(driver.pid).children()
                if len(workers) != 1:
                    raise RuntimeError(f"{len(workers)} Procrastinate workers, not 1")
                marks.append((snapshot(driver.pid, None, workers[0].pid), time.perf_counter()))
                driver.stdin.write("\n")
                driver.stdin.flush()
            result = json.loads(driver.stdout.read().strip().splitlines()[-1])
            if driver.wait(60) != 0 or result["failed"]:
                raise RuntimeError(f"the Procrastinate run failed: {result}")
        finally:
            deadline.cancel()
            if driver.poll() is None:
                driver.kill()
                driver.wait(10)
    (a, t0), (b, t1) = marks
    return split("procrastinate", args.n, t1 - t0, a, b)


def report(splits: list[Split], version: str) -> str:
    names = {
        "mcpexec": "serve --no-workers + 1 mcpexec worker --workers 4",
        "procrastinate": f"procrastinate {version}, 1 worker, concurrency 4",
    }
    sides = [s for side in names for s in splits if s.side == side]
    width = max(len(g) for g in GROUPS) + 2

    def row(label: str, cells: Iterable[str]) -> str:
        return f"{label:<{width}}" + "".join(f"{c:>9}" for c in cells)

    head = [f"{'':<{width}}" + "".join(f"{s.side[:8]:>9}" for s in sides)]
    lines = [
        *head,
        row("jobs/s", (f"{s.jobs_per_s:.0f}" for s in sides)),
        row("CPU ms per job, all", (f"{s.total_ms:.2f}" for s in sides)),
        *(row(f"  {g}", (f"{s.ms[g]:.2f}" for s in sides)) for g in GROUPS),
        row("cores busy", (f"{s.cores:.2f}" for s in sides)),
    ]
    legend = "; ".join(f"{side[:8]}: {name}" for side, name in names.items())
    return "\n".join([*lines, "", legend])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="jobs per round and side")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2, help="rounds per side, alternated")
    parser.add_argument("--pg", default=DEFAULT_PG, help="a PostgreSQL server (admin database)")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--procrastinate-python", default=PROCRASTINATE_PYTHON)
    args = parser.parse_args()
    version = procrastinate_version(args.procrastinate_python)
    if version is None:
        print(f"Procrastinate is not in {args.procrastinate_python} (see bench_postgres.py)")
        return 1
    print(
        f"CPU per job by process — {platform.node()} · {os.cpu_count()} CPUs · "
        f"{datetime.now():%Y-%m-%d %H:%M} · N={args.n} per round · load {os.getloadavg()[0]:.1f}\n"
    )
    splits: list[Split] = []
    for i in range(args.rounds):
        order = ("mcpexec", "procrastinate") if i % 2 == 0 else ("procrastinate", "mcpexec")
        for side in order:
            if side == "mcpexec":
                splits.append(asyncio.run(mcpexec_round(args)))
            else:
                splits.append(procrastinate_round(args))
    print(report(splits, version))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
