"""The storage budget (issue 8, item 2): submits are refused once the logs and artifacts kept
use up the global (``max_storage_mb``) or the tenant's (``tenant_max_storage_mb``) budget."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mcpexec.app import App, Principal
from mcpexec.errors import StorageQuotaExceeded
from mcpexec.executor.fake import FakeExecutor
from mcpexec.models import RunRequest, RunStatus, utcnow
from mcpexec.settings import Settings
from mcpexec.store.blobs import FileBlobStore
from mcpexec.store.memory import MemoryStore

pytestmark = pytest.mark.anyio

ALICE = Principal("t1", "alice", "admin", "alice")
BOB = Principal("t2", "bob", "admin", "bob")
KIB_IN_MB = 1 / 1024
BOUND_S = 10.0


async def _app(tmp_path: Path, **budget: float) -> App:
    values: dict[str, Any] = {"home": tmp_path, "poll_s": 0.05, **budget}
    settings = Settings(**values)
    app = App(settings, MemoryStore(), FakeExecutor(), FileBlobStore(tmp_path / "a"))
    await app.open()
    await app.start_background(workers=1, reaper=False)
    return app


def loud() -> RunRequest:
    return RunRequest.model_validate({"command": ["echo", "x" * 2000]})  # ~2 KiB of output


async def test_a_tenant_over_its_budget_is_refused_and_others_are_not(tmp_path: Path) -> None:
    app = await _app(tmp_path, tenant_max_storage_mb=KIB_IN_MB)
    try:
        run, _ = await app.submit(loud(), ALICE)
        assert (await app.wait(run.id, ALICE, BOUND_S)).status == RunStatus.COMPLETED
        with pytest.raises(StorageQuotaExceeded) as refused:
            await app.submit(loud(), ALICE)
        assert refused.value.code == "storage_quota_exceeded"
        assert refused.value.details["setting"] == "tenant_max_storage_mb"
        assert "alice" in refused.value.message
        other, created = await app.submit(loud(), BOB)
        assert created
        assert (await app.wait(other.id, BOB, BOUND_S)).status == RunStatus.COMPLETED
        # retention gives the budget back
        await app.store.purge_finished(utcnow() + timedelta(days=1))
        _, created = await app.submit(loud(), ALICE)
        assert created
    finally:
        await asyncio.wait_for(app.close(), BOUND_S)


async def test_the_global_budget_counts_every_tenant(tmp_path: Path) -> None:
    app = await _app(tmp_path, max_storage_mb=KIB_IN_MB)
    try:
        run, _ = await app.submit(loud(), ALICE)
        assert (await app.wait(run.id, ALICE, BOUND_S)).status == RunStatus.COMPLETED
        with pytest.raises(StorageQuotaExceeded) as refused:
            await app.submit(loud(), BOB)
        assert refused.value.details["setting"] == "max_storage_mb"
        assert refused.value.http_status == 507
    finally:
        await asyncio.wait_for(app.close(), BOUND_S)


async def test_no_budget_by_default(tmp_path: Path) -> None:
    app = await _app(tmp_path)
    try:
        for _ in range(3):
            run, _ = await app.submit(loud(), ALICE)
            assert (await app.wait(run.id, ALICE, BOUND_S)).status == RunStatus.COMPLETED
    finally:
        await asyncio.wait_for(app.close(), BOUND_S)


async def test_runs_of_tasks_and_workflow_steps_count_against_the_budget_too(
    tmp_path: Path,
) -> None:
    # Every submitter goes through App.enqueue: a task's run and a workflow's step are refused
    # (the step fails, naming the budget) like a plain run.
    from mcpexec.task_files import parse_task
    from mcpexec.workflows.state import StepStatus

    app = await _app(tmp_path, tenant_max_storage_mb=KIB_IN_MB)
    try:
        run, _ = await app.submit(loud(), ALICE)
        assert (await app.wait(run.id, ALICE, BOUND_S)).status == RunStatus.COMPLETED
        await app.tasks.define(parse_task("shell: echo hi", name="hi", fmt="yaml"), ALICE)
        with pytest.raises(StorageQuotaExceeded):
            await app.submit(RunRequest.model_validate({"task": "hi"}), ALICE)

        await app.workflows.define("name: wf\nsteps:\n  a: {shell: 'true'}\n", ALICE)
        rec = await app.workflows.start("wf", {}, ALICE)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BOUND_S
        while rec.status in ("queued", "running"):
            assert loop.time() < deadline, rec.state
            await app.workflows.engine.advance(rec)
            rec = await app.workflows.get_run(rec.id, ALICE)
        step = rec.state["steps"]["a"]
        assert step["status"] == StepStatus.FAILED
        assert "storage budget" in step["error"]
    finally:
        await asyncio.wait_for(app.close(), BOUND_S)
