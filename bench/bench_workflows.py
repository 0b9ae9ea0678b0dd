"""Workflow engine latencies (issue 16), in one process on a real App (SQLite file, real
processes, ``sandbox=none`` so only the engine is measured, 4 worker slots):

- handoff: a step writes its checkpoint (the time is inside it) and exits → the next step's
  run is enqueued (its ``created_at``) and started (its ``started_at``), p50/p99 over N workflow
  runs; baseline in the same run: a plain run's submit → ``started_at`` (the worker's pickup);
- ``get_workflow_status`` over MCP (the SDK's in-memory client), p50/p95; baseline ``get_run``;
- detection: a checkpoint written while its step's run goes on (an agent that lingers) → the
  engine's ``checkpoint_detected``, with the inotify watch; baseline in the same run: the same
  with the watch off (the engine's 50 ms polling);
- a workflow of 4 trivial steps (``true``) end to end, median; baseline: 4 runs of ``true``
  submitted and awaited one after the other.

    .venv/bin/python bench/bench_workflows.py [-n 30] [--calls 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from mcp import Client
from timing import pct, timed

from mcpexec.app import App, Principal
from mcpexec.bootstrap import build_app
from mcpexec.mcp_server.server import build_mcp_server
from mcpexec.models import RunRequest
from mcpexec.settings import Settings

ADMIN = Principal("tok-admin", "admin", "admin", "default")
WRITE = (
    "import json, time; "
    "json.dump({'status': 'complete', 'at': time.time()}, open('checkpoints/a.json', 'w'))"
)
HANDOFF = json.dumps(
    {
        "name": "handoff",
        "steps": {
            "a": {
                "command": [sys.executable, "-c", WRITE],
                "checkpoint": {"file": "checkpoints/a.json", "schema": {"required": ["at"]}},
            },
            "b": {"needs": ["a"], "shell": "true"},
        },
    }
)
LINGER = json.dumps(
    {
        "name": "linger",
        "steps": {
            "a": {
                # writes its checkpoint, then goes on (an agent that lingers): only the
                # checkpoint itself can tell the engine
                "command": [sys.executable, "-c", WRITE + "; time.sleep(30)"],
                "checkpoint": {"file": "checkpoints/a.json", "schema": {"required": ["at"]}},
            },
        },
    }
)
FOUR = json.dumps(
    {
        "name": "four",
        "steps": {
            "s1": {"shell": "true"},
            "s2": {"needs": ["s1"], "shell": "true"},
            "s3": {"needs": ["s2"], "shell": "true"},
            "s4": {"needs": ["s3"], "shell": "true"},
        },
    }
)


async def finished(app: App, run_id: str, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        rec = await app.workflows.get_run(run_id, ADMIN)
        if rec.status not in ("queued", "running", "waiting"):
            return rec
        if time.monotonic() > deadline:
            raise RuntimeError(f"{run_id} still {rec.status}")
        await asyncio.sleep(0.005)


def ms(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds() * 1000


async def handoff(app: App, n: int) -> tuple[list[float], list[float]]:
    await app.workflows.define(HANDOFF, ADMIN)
    enqueued, started = [], []
    for _ in range(n):
        rec = await finished(app, (await app.workflows.start("handoff", {}, ADMIN)).id)
        assert rec.status == "completed", rec.state
        written = rec.state["steps"]["a"]["checkpoint"]["at"]
        run_b = await app.get(rec.state["steps"]["b"]["run_id"], ADMIN)
        assert run_b.started_at is not None
        enqueued.append((run_b.created_at.timestamp() - written) * 1000)
        started.append((run_b.started_at.timestamp() - written) * 1000)
    return enqueued, started


async def detection(app: App, n: int, watch: bool) -> tuple[list[float], float]:
    """Checkpoint written while its run goes on → the engine's ``checkpoint_detected``; with
    the inotify watch, or (``watch=False``) by the engine's polling every ``CHECK_S``. Also the
    engine's ticks per second meanwhile (each reads every active workflow run)."""
    engine = app.workflows.engine
    engine.checkpoints.working = watch
    ticks = 0

    async def count() -> None:
        nonlocal ticks
        ticks += 1

    engine.on_tick = count
    began = time.monotonic()
    samples = []
    for _ in range(n):
        rec = await finished(app, (await app.workflows.start("linger", {}, ADMIN)).id)
        assert rec.status == "completed", rec.state
        written = rec.state["steps"]["a"]["checkpoint"]["at"]
        events = await app.workflows.events(rec.id, ADMIN)
        assert not [e for e in events if e.kind == "checkpoint_invalid"], events  # half-written
        seen = next(e for e in events if e.kind == "checkpoint_detected")
        samples.append((seen.at.timestamp() - written) * 1000)
    engine.on_tick = None
    return samples, ticks / (time.monotonic() - began)


async def pickup(app: App, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        run, _ = await app.submit(RunRequest(shell="true"), ADMIN)
        done = await app.wait(run.id, ADMIN, 30)
        assert done.started_at is not None
        samples.append(ms(run.created_at, done.started_at))
    return samples


async def end_to_end(app: App, n: int) -> tuple[list[float], list[float]]:
    await app.workflows.define(FOUR, ADMIN)
    workflow, plain = [], []
    for _ in range(n):
        start = time.perf_counter()
        rec = await finished(app, (await app.workflows.start("four", {}, ADMIN)).id)
        workflow.append((time.perf_counter() - start) * 1000)
        assert rec.status == "completed"
        start = time.perf_counter()
        for _ in range(4):
            run, _ = await app.submit(RunRequest(shell="true"), ADMIN)
            await app.wait(run.id, ADMIN, 30)
        plain.append((time.perf_counter() - start) * 1000)
    return workflow, plain


async def status_calls(app: App, calls: int) -> tuple[list[float], list[float]]:
    rec = await finished(app, (await app.workflows.start("four", {}, ADMIN)).id)
    run_id = rec.state["steps"]["s1"]["run_id"]
    server = build_mcp_server(app, local=True)
    try:
        async with Client(server) as client:

            async def status() -> None:
                result = await client.call_tool("get_workflow_status", {"run_id": rec.id})
                assert not result.is_error

            async def get_run() -> None:
                result = await client.call_tool("get_run", {"run_id": run_id})
                assert not result.is_error

            return await timed(status, calls), await timed(get_run, calls)
    finally:
        await server.watcher.close()


def line(name: str, samples: list[float], base: list[float] | None = None) -> str:
    p50, p95, p99 = (pct(samples, q) for q in (50, 95, 99))
    text = f"{name:<44} p50 {p50:7.1f}  p95 {p95:7.1f}  p99 {p99:7.1f} ms"
    if base:
        text += f"   (x{statistics.median(samples) / statistics.median(base):.2f} baseline)"
    return text


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=30)
    parser.add_argument("--calls", type=int, default=300)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mcpexec-bench-wf-") as home:
        settings = Settings(home=Path(home), sandbox="none", poll_s=0.05, heartbeat_s=0.5)
        app = build_app(settings)
        await app.open()
        await app.start_background(workers=4, scheduler=True)
        try:
            print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, n={opts.n}")
            base = await pickup(app, opts.n)
            enq, started = await handoff(app, opts.n)
            print(line("baseline: plain run submit -> started", base))
            print(line("checkpoint written -> next step enqueued", enq))
            print(line("checkpoint written -> next step started", started, base))
            await app.workflows.define(LINGER, ADMIN)
            polled, polled_ticks = await detection(app, max(5, opts.n // 3), watch=False)
            watched, watched_ticks = await detection(app, max(5, opts.n // 3), watch=True)
            print(line("baseline: checkpoint -> detected, polling", polled))
            print(line("checkpoint -> detected, inotify (run going on)", watched, polled))
            print(
                f"engine ticks/s meanwhile: polling {polled_ticks:.1f}, inotify "
                f"{watched_ticks:.1f} (x{watched_ticks / polled_ticks:.2f})"
            )
            wf, plain = await end_to_end(app, max(5, opts.n // 3))
            print(line("baseline: 4 runs of true, one after another", plain))
            print(line("workflow of 4 trivial steps, end to end", wf, plain))
            status, get_run = await status_calls(app, opts.calls)
            print(line("baseline: get_run over MCP (in-memory)", get_run))
            print(line("get_workflow_status over MCP (in-memory)", status, get_run))
        finally:
            await app.close()


if __name__ == "__main__":
    asyncio.run(main())
