"""The workflow engine on a real App (SQLite, real processes, the fake agent CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcpexec.models import RunFilter

from .workflow_app import ADMIN, PIPELINE, until, workflow_app

pytestmark = pytest.mark.anyio


async def test_four_phase_pipeline_end_to_end(tmp_path: Path) -> None:
    async with workflow_app(tmp_path) as app:
        record, created = await app.workflows.define(PIPELINE, ADMIN)
        assert (record.name, record.version, created) == ("pipeline", 1, True)
        rec = await app.workflows.start("pipeline", {"feature": "test-auth"}, ADMIN)
        done = await until(app, rec.id, "completed")
        steps = done.state["steps"]
        assert [steps[s]["status"] for s in steps] == ["completed"] * 5
        assert steps["verifier"]["checkpoint"]["status"] == "complete"
        workspace = Path(done.state["workspace"])
        calls = [
            json.loads(x) for x in (workspace / ".fake-agent/calls.jsonl").read_text().splitlines()
        ]
        assert [c["step"] for c in calls] == ["orchestrator", "tester", "implementer", "verifier"]
        # one session: the first phase creates it, later phases --resume it
        assert "--resume" not in calls[0]["argv"]
        assert all(c["argv"][-2:] == ["--resume", calls[0]["session"]] for c in calls[1:])
        runs = await app.list_runs(ADMIN, RunFilter(labels={"workflow_run": rec.id}))
        assert {r.labels["step"] for r in runs.runs} == set(steps)
        kinds = [e.kind for e in await app.workflows.events(rec.id, ADMIN)]
        assert kinds[:2] == ["queued", "started"]
        assert kinds[-1] == "completed"
        assert kinds.count("checkpoint_detected") == 4
        assert (workspace / "checkpoints").stat().st_mode & 0o777 == 0o700
        assert (workspace / "checkpoints/tester.json").stat().st_mode & 0o777 == 0o600
