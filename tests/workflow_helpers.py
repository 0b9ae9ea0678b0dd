"""A real App running the workflow engine, and the fake agent CLI (``tests/fake_agent``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from integration.task_app import real_app
from mcpexec.app import App, Principal
from mcpexec.store.base import WorkflowRunRecord

ADMIN = Principal("tok-admin", "admin", "admin", "default")
FAKE_CLAUDE = str(Path(__file__).resolve().parent / "fake_agent" / "claude")

#: Seed 004's malicious feature names: each must be refused with nothing executed.
MALICIOUS = [
    "'; rm -rf /; #",
    "../../../etc/passwd",
    "\x00\x01\x02",
    "A" * 1000,
    "feature-${EVIL_VAR}",
    "<script>alert('xss')</script>",
]
PHASES = ("orchestrator", "tester", "implementer", "verifier")
CHECKPOINT_SCHEMA = {"type": "object", "required": ["status"]}
INIT = (
    'mkdir -p instructions && echo "feature $MCPEXEC_PARAM_FEATURE" > TASK_SPEC.md && '
    'for r in orchestrator tester implementer verifier; do echo "You are the $r." > '
    "instructions/$r.md; done"
)


def agent_step(role: str, needs: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "needs": needs,
        "agent": {"executable": FAKE_CLAUDE, "instructions": f"instructions/{role}.md"},
        "checkpoint": {"file": f"checkpoints/{role}.json", "schema": CHECKPOINT_SCHEMA},
        **extra,
    }


def pipeline(
    name: str = "pipeline",
    modes: dict[str, str] | None = None,
    steps_extra: dict[str, dict[str, Any]] | None = None,
    **top: Any,
) -> str:
    """seed 004's four phases after an init step, as YAML (JSON is YAML); ``modes``: the fake
    agent's mode per phase (``$FAKE_AGENT_MODE``)."""
    steps: dict[str, Any] = {"init": {"shell": INIT}}
    before = "init"
    for role in PHASES:
        extra = dict((steps_extra or {}).get(role, {}))
        if modes and role in modes:
            extra["env"] = {"FAKE_AGENT_MODE": modes[role]}
        steps[role] = agent_step(role, [before], **extra)
        before = role
    definition = {
        "name": name,
        "params": {
            "type": "object",
            "properties": {"feature": {"type": "string", "pattern": "^[a-z0-9-]{3,20}$"}},
            "required": ["feature"],
        },
        "concurrency": 2,
        "steps": steps,
        **top,
    }
    return json.dumps(definition, indent=2)


PIPELINE = pipeline()


@asynccontextmanager
async def workflow_app(tmp_path: Path, workers: int = 4, **overrides: Any) -> AsyncIterator[App]:
    """A real App (``sandbox=none``) running the workflow engine (with the scheduler)."""
    async with real_app(tmp_path, workers, scheduler=True, **overrides) as app:
        yield app


async def until(
    app: App,
    run_id: str,
    check: Any,
    timeout_s: float = 60.0,
    principal: Principal = ADMIN,
) -> WorkflowRunRecord:
    """Wait (bounded, once per engine tick) until ``check(record)`` holds; ``check`` may be a
    status."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    predicate = check if callable(check) else (lambda r: r.status == check)
    while True:
        rec = await app.workflows.get_run(run_id, principal)
        if predicate(rec):
            return rec
        if loop.time() > deadline:
            raise AssertionError(f"workflow run {run_id}: {rec.status} {rec.state['steps']}")
        await asyncio.sleep(0.02)


def step_status(rec: WorkflowRunRecord, step: str) -> str:
    status: str = rec.state["steps"][step]["status"]
    return status
