"""A real App for task and schedule tests: SQLite file, real processes (``sandbox=none``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mcpexec.app import App, Principal
from mcpexec.bootstrap import build_app
from mcpexec.models import Run
from mcpexec.settings import Settings
from mcpexec.task_files import parse_task
from mcpexec.tasks import TaskDefinition

ADMIN = Principal("tok-admin", "admin", "admin", "default")
ALICE = Principal("tok-alice", "alice", "submitter", "acme")


@asynccontextmanager
async def real_app(
    tmp_path: Path, workers: int = 2, *, scheduler: bool = False, **overrides: Any
) -> AsyncIterator[App]:
    settings = Settings(
        home=tmp_path / "home",
        sandbox="none",
        poll_s=0.05,
        heartbeat_s=0.2,
        kill_grace_s=0.2,
        shutdown_grace_s=0.5,
        **overrides,
    )
    app = build_app(settings)
    await app.open()
    await app.start_background(workers=workers, scheduler=scheduler)
    try:
        yield app
    finally:
        await asyncio.wait_for(app.close(), 20)


def task(text: str, name: str = "report") -> TaskDefinition:
    return parse_task(text, name=name, fmt="yaml")


async def until(app: App, run_id: str, status: str, timeout_s: float = 15.0) -> Run:
    """Wait (bounded, on the App's run events) until the run has ``status``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        run = await app.get(run_id, ADMIN)
        if run.status == status:
            return run
        if loop.time() > deadline:
            raise AssertionError(f"run {run_id} is {run.status}, not {status}")
        await app.events.wait_run(run_id, 0.2)
