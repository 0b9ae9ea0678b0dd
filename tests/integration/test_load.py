"""Load: 2,000 runs through 4 worker slots of a real App (SQLite file, real processes, sandbox
``none``), with the spawn helper and with the exec wrapper. Every run is accounted for: completed,
exit code 0, its own output stored. Not timed (speed is bench/bench_engine.py's business)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from executor_helpers import helper_processes
from mcpexec.app import App, Principal
from mcpexec.bootstrap import build_app
from mcpexec.models import RunRequest, Stream
from mcpexec.settings import Settings

ADMIN = Principal("tok-admin", "admin", "admin", "default")
RUNS = 2000
SLOTS = 4

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.mark.parametrize("spawn_helper", [True, False], ids=["helper", "wrapper"])
def test_two_thousand_runs_over_four_slots_all_accounted_for(
    tmp_path: Path, spawn_helper: bool
) -> None:
    settings = Settings(
        home=tmp_path / "home",
        sandbox="none",
        spawn_helper=spawn_helper,
        poll_s=0.05,
        heartbeat_s=0.5,
        kill_grace_s=0.2,
        shutdown_grace_s=2.0,
    )

    async def submit_all(app: App) -> list[str]:
        ids: list[str] = []
        for start in range(0, RUNS, 100):  # 100 submits in flight at a time
            batch = [
                app.submit(RunRequest.model_validate({"command": ["echo", f"run-{i}"]}), ADMIN)
                for i in range(start, start + 100)
            ]
            ids += [run.id for run, created in await asyncio.gather(*batch) if created]
        return ids

    async def main() -> None:
        app = build_app(settings, pidfd_watcher=True)
        await app.open()
        await app.start_background(workers=SLOTS)
        try:
            assert bool(helper_processes(os.getpid())) == spawn_helper
            ids = await submit_all(app)
            assert len(ids) == RUNS
            for i, run_id in enumerate(ids):
                run = await app.wait(run_id, ADMIN, 120)
                assert (run.status, run.exit_code, run.attempts) == ("completed", 0, 1), run
                out, _, complete = await app.read_logs(run_id, ADMIN, Stream.STDOUT, 0, 1024)
                assert (out, complete) == (f"run-{i}\n".encode(), True)
            stats = await app.stats(ADMIN)
            assert stats.by_status["completed"] == RUNS
            assert sum(stats.by_status.values()) == RUNS
        finally:
            await asyncio.wait_for(app.close(), 60)

    asyncio.run(main())
