"""Spool benchmark: ``mcpexec spool`` against the seed's design (poll ``pending/`` every 2 s,
run the jobs one after another).

Measures, for each of the two:

(a) pickup latency: a job file renamed into ``pending/`` → its run started (mcpexec: the run's
    ``started_at`` in the result; baseline: just before its ``subprocess.run``), p50 and p99,
    with drops at random moments (the baseline's latency depends on where in its 2 s cycle a
    file lands);
(b) 1,000 small job files (``{"command": "true"}``) written into ``pending/`` as fast as
    possible, from the first drop until every result file is written.

The baseline is a tiny polling loop in this script, written like seed 002's QueueProcessor
(sorted by mtime, ``subprocess.run`` with a 300 s timeout, result JSON written, file moved).
mcpexec runs as a real ``mcpexec spool run DIR`` process with its own workers (default 4) on a
fresh temporary home, unsandboxed unless ``MCPEXEC_SANDBOX`` says otherwise (the sandbox's
cost is bench_sandbox's subject). Every wait is bounded; processes are killed at the end.

Usage::

    .venv/bin/python bench/bench_spool.py            # full (about two minutes)
    .venv/bin/python bench/bench_spool.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

MCPEXEC = str(Path(sys.executable).parent / "mcpexec")
POLL_S = 2.0  # the seed's interval


# --- helpers ------------------------------------------------------------------------------------
def drop(pending: Path, name: str, job: dict[str, object]) -> float:
    """Write-then-rename; returns the wall-clock time of the rename."""
    tmp = pending / f".{name}.tmp"
    tmp.write_text(json.dumps(job))
    os.rename(tmp, pending / name)
    return time.time()


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.002)  # the benchmark observes from outside: polling is the only way
    raise TimeoutError(f"{what} not within {timeout_s}s")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def count(path: Path) -> int:
    return sum(1 for n in os.listdir(path) if not n.startswith("."))


# --- the baseline: seed 002's loop --------------------------------------------------------------
class SeedPoller:
    """Poll every 2 s; process pending jobs oldest first, one at a time."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("pending", "processing", "completed", "failed"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self.started: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            pending = self.root / "pending"
            jobs = sorted(
                (p for p in pending.iterdir() if not p.name.startswith(".")),
                key=lambda p: p.stat().st_mtime,
            )
            for path in jobs:
                self._process(path)
            self._stop.wait(POLL_S)

    def _process(self, path: Path) -> None:
        job = json.loads(path.read_text())
        self.started[path.name] = time.time()
        try:
            proc = subprocess.run(
                [job["command"], *job.get("args", [])],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            result = {
                "status": "completed" if proc.returncode == 0 else "failed",
                "returncode": proc.returncode,
                "stdout": proc.stdout,
                "stderr": proc.stderr,
                "completed_at": datetime.now().isoformat(),
            }
        except (OSError, subprocess.TimeoutExpired) as exc:
            result = {"status": "failed", "error": str(exc)}
        job["result"] = result
        target = self.root / ("completed" if result["status"] == "completed" else "failed")
        (target / path.name).write_text(json.dumps(job, indent=2))
        path.unlink()


# --- mcpexec spool ------------------------------------------------------------------------------
class McpexecSpool:
    def __init__(self, root: Path, home: Path, workers: int) -> None:
        self.root, self.home = root, home
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(home),
            "MCPEXEC_HOME": str(home),
            "MCPEXEC_WORKERS": str(workers),
            "MCPEXEC_SANDBOX": os.environ.get("MCPEXEC_SANDBOX", "none"),
            "MCPEXEC_TASK_PATH": "/usr/bin:/bin",
        }
        env.update({k: v for k, v in os.environ.items() if k.startswith("MCPEXEC_SPOOL_")})
        home.mkdir(parents=True)
        self.log = (home / "spool.log").open("wb")
        self.proc = subprocess.Popen(
            [MCPEXEC, "spool", "run", str(root)], env=env, stdout=self.log, stderr=self.log
        )
        self.started: dict[str, float] = {}
        wait_for((root / "daemon.log").exists, 120, "spool start")

    def started_at(self, name: str) -> float:
        result = json.loads((self.root / "completed" / name).read_text())["result"]
        return datetime.fromisoformat(result["started_at"]).timestamp()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


# --- measurements -------------------------------------------------------------------------------
def latency(
    root: Path, started: Callable[[str], float], n: int, spacing_s: float, prefix: str = "lat"
) -> list[float]:
    """Drop ``n`` jobs one at a time, each after a random pause in [0, spacing_s)."""
    pending, completed = root / "pending", root / "completed"
    samples = []
    for i in range(n):
        time.sleep(random.uniform(0, spacing_s))
        name = f"{prefix}{i:04d}.json"
        t_drop = drop(pending, name, {"command": "true"})
        done = completed / name
        wait_for(done.exists, 30, name)
        samples.append((started(name) - t_drop) * 1000)
    return samples


def throughput(root: Path, n: int, timeout_s: float) -> float:
    pending, completed = root / "pending", root / "completed"
    before = count(completed)
    t0 = time.monotonic()
    for i in range(n):
        drop(pending, f"flood{i:05d}.json", {"command": "true"})
    wait_for(lambda: count(completed) - before >= n, timeout_s, f"{n} results")
    return time.monotonic() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--n", type=int, help="job files in the flood (default 1000; quick 100)")
    args = parser.parse_args()
    n_lat, n_lat_seed, n_flood = (20, 5, 100) if args.quick else (200, 30, 1000)
    n_flood = args.n or n_flood

    print(f"# bench_spool  {datetime.now().isoformat(timespec='seconds')}")
    print(f"host: {platform.node()}  cores: {os.cpu_count()}  load: {os.getloadavg()[0]:.2f}")
    print(
        f"python {platform.python_version()}  sandbox: {os.environ.get('MCPEXEC_SANDBOX', 'none')}"
    )
    tmp = Path(tempfile.mkdtemp(prefix="bench-spool-"))
    try:
        spool = McpexecSpool(tmp / "mq", tmp / "home", args.workers)
        try:
            latency(spool.root, spool.started_at, 5, 0.01, "warm")
            mc_lat = latency(spool.root, spool.started_at, n_lat, 0.05)
            mc_flood = throughput(spool.root, n_flood, 600)
        finally:
            spool.stop()
        seed = SeedPoller(tmp / "sq")
        seed.start()
        try:
            seed_lat = latency(seed.root, seed.started.__getitem__, n_lat_seed, POLL_S)
            seed_flood = throughput(seed.root, n_flood, 600)
        finally:
            seed.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    rows = [
        ("pickup p50 (ms)", pct(mc_lat, 50), pct(seed_lat, 50)),
        ("pickup p99 (ms)", pct(mc_lat, 99), pct(seed_lat, 99)),
        ("pickup mean (ms)", statistics.fmean(mc_lat), statistics.fmean(seed_lat)),
        (f"{n_flood} jobs, drop→all results (s)", mc_flood, seed_flood),
        (f"{n_flood} jobs, jobs/s", n_flood / mc_flood, n_flood / seed_flood),
    ]
    print(f"samples: pickup mcpexec {len(mc_lat)}, seed {len(seed_lat)}; workers {args.workers}")
    print(f"{'':38} {'mcpexec':>10} {'seed (2 s poll)':>16} {'ratio':>8}")
    for label, ours, theirs in rows:
        better = theirs / ours if "jobs/s" not in label else ours / theirs
        print(f"{label:38} {ours:10.1f} {theirs:16.1f} {better:7.1f}x")
    print("ratio: how many times better mcpexec is (lower latency/time, higher jobs/s)")


if __name__ == "__main__":
    main()
