"""Scheduler accuracy on a live server: how late does a scheduled fire start running?

Starts its own ``mcpexec serve`` (fresh temporary ``MCPEXEC_HOME``, loopback, ``--workers 4``),
defines a task ``true``, creates ``--schedules`` schedules firing ``every: 1s`` (overlap
``allow_all``), lets them fire ``--fires`` times each, pauses them, and reads every fire's run:

- fire → enqueued: ``created_at - scheduled_for`` (the scheduler loop: sleep precision, the step);
- fire → run start: ``started_at - scheduled_for`` (adds the worker's claim and the spawn);

nearest-rank p50/p95/p99/max in milliseconds. The sandbox is whatever ``MCPEXEC_SANDBOX`` says
(default: bwrap); ``--sandbox none`` measures the scheduler without the sandbox's start-up.

Usage::

    .venv/bin/python bench/bench_scheduler.py                 # 2 schedules x 30 fires (~35 s)
    .venv/bin/python bench/bench_scheduler.py --quick         # 1 x 8
    .venv/bin/python bench/bench_scheduler.py --json out.json

serve is killed at the end, whatever happens; every wait is bounded (``--timeout``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

MCPEXEC = str(Path(sys.executable).parent / "mcpexec")
TERMINAL = ("completed", "failed", "cancelled")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def percentile(values: list[float], q: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values),
    }


@contextlib.contextmanager
def serve(home: Path, port: int, sandbox: str | None, timeout_s: float) -> Iterator[str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "MCPEXEC_HOME": str(home),
        "MCPEXEC_TASK_PATH": "/usr/bin:/bin",
    }
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    if sandbox:
        env["MCPEXEC_SANDBOX"] = sandbox
    log = (home / "serve.log").open("wb")
    proc = subprocess.Popen(
        [MCPEXEC, "serve", "--port", str(port), "--workers", "4", "--log-level", "warning"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError((home / "serve.log").read_text())
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("serve did not start")
            time.sleep(0.05)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def measure(url: str, token: str, schedules: int, fires: int, timeout_s: float) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        http.put("/api/v1/tasks/tick", json={"command": ["true"]}).raise_for_status()
        body = {"task": "tick", "every": "1s", "overlap": "allow_all"}
        ids = []
        for _ in range(schedules):
            created = http.post("/api/v1/schedules", json=body)
            created.raise_for_status()
            ids.append(created.json()["id"])
        deadline = time.monotonic() + timeout_s
        runs: list[dict[str, Any]] = []
        for sid in ids:
            while True:
                page = http.get("/api/v1/runs", params={"label": f"schedule={sid}", "limit": 500})
                found = page.json()["runs"]
                done = [r for r in found if r["status"] in TERMINAL]
                if len(done) >= fires:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {len(done)} of {fires} fires after {timeout_s}s")
                time.sleep(0.5)
            http.post(f"/api/v1/schedules/{sid}/pause").raise_for_status()
            runs.extend(done[:fires])
    enqueued, started = [], []
    for run in runs:
        fire = when(run["labels"]["scheduled_for"])
        enqueued.append((when(run["created_at"]) - fire).total_seconds() * 1000)
        started.append((when(run["started_at"]) - fire).total_seconds() * 1000)
    return {"fire_to_enqueued_ms": summary(enqueued), "fire_to_start_ms": summary(started)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--schedules", type=int, default=2)
    parser.add_argument("--fires", type=int, default=30)
    parser.add_argument("--sandbox", choices=["default", "strict", "none"])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.schedules, args.fires = 1, 8
    home = Path(tempfile.mkdtemp(prefix="mcpexec-bench-sched-"))
    try:
        with serve(home, free_port(), args.sandbox, 60) as url:
            token = (home / "token").read_text().strip()
            result = measure(url, token, args.schedules, args.fires, args.timeout)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    result["config"] = {
        "schedules": args.schedules,
        "fires_each": args.fires,
        "every": "1s",
        "sandbox": args.sandbox or os.environ.get("MCPEXEC_SANDBOX", "default"),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
    }
    print(f"scheduler accuracy: {args.schedules} schedule(s) x {args.fires} fires, every 1s")
    print(f"  sandbox: {result['config']['sandbox']}; {result['config']['machine']}")
    for key, label in (
        ("fire_to_enqueued_ms", "fire → run enqueued"),
        ("fire_to_start_ms", "fire → run started"),
    ):
        s = result[key]
        print(
            f"  {label:<22} n={s['n']:<4} p50 {s['p50']:7.1f} ms  p95 {s['p95']:7.1f} ms  "
            f"p99 {s['p99']:7.1f} ms  max {s['max']:7.1f} ms"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
