"""``app.tools`` on the in-memory store with only the built-in ``fs`` (no downstream process):
who may do what, and a ``tool`` run through a real worker (``ToolRunExecutor``); the scripted
executor only stands in for the runs that are not tool runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mcpexec.app import App, Principal
from mcpexec.errors import Forbidden
from mcpexec.executor.fake import FakeExecutor
from mcpexec.gateway.errors import InvalidArguments, UnknownTool
from mcpexec.models import FailureKind, RunFilter, RunRequest, RunStatus, Stream
from mcpexec.settings import Settings
from mcpexec.store.blobs import FileBlobStore
from mcpexec.store.memory import MemoryStore

pytestmark = pytest.mark.anyio

ADMIN = Principal("t0", "admin", "admin", "default")
OPERATOR = Principal("t1", "op", "operator", "default")
VIEWER = Principal("t2", "viewer", "viewer", "default")


async def _app(tmp_path: Path, **settings: Any) -> App:
    config = Settings(home=tmp_path, poll_s=0.05, heartbeat_s=0.05, reaper_s=0.05, **settings)
    app = App(config, MemoryStore(), FakeExecutor(), FileBlobStore(tmp_path / "artifacts"))
    await app.open()
    await app.start_background(workers=1)
    return app


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    box = tmp_path / "box"
    app = await _app(tmp_path, sandbox_directory=box)
    (box / "a.txt").write_text("alpha")
    yield app
    await asyncio.wait_for(app.close(), 10)


async def test_roles(app: App) -> None:
    names = {t.qualified for t in await app.tools.list_tools(VIEWER)}
    assert "fs.read_text_file" in names
    with pytest.raises(Forbidden):
        await app.tools.call(VIEWER, "fs.read_text_file", {"path": "a.txt"})
    outcome = await app.tools.call(OPERATOR, "fs.read_text_file", {"path": "a.txt"})
    assert outcome.status == "success"
    assert outcome.result is not None
    assert outcome.result.structured["content"] == "alpha"
    with pytest.raises(Forbidden):
        await app.tools.reload(OPERATOR)
    assert (await app.tools.reload(ADMIN))["added"] == []
    with pytest.raises(UnknownTool):
        await app.tools.list_tools(VIEWER, "nope")


async def test_fs_refusal_is_an_outcome_not_an_error(app: App) -> None:
    outcome = await app.tools.call(OPERATOR, "read_text_file", {"path": "../../etc/passwd"})
    assert outcome.status == "error"
    body = outcome.to_dict()
    assert body["error"]["code"] == "path_outside_sandbox"
    assert body["tool"] == "fs.read_text_file"


async def test_a_tool_run_goes_through_the_worker(app: App, tmp_path: Path) -> None:
    write = RunRequest.model_validate(
        {"tool": {"name": "fs.write_file", "arguments": {"path": "b.txt", "content": "beta"}}}
    )
    run, _ = await app.submit(write, OPERATOR)
    done = await app.wait(run.id, OPERATOR, 10)
    assert done.status == RunStatus.COMPLETED, done.failure
    assert (tmp_path / "box" / "b.txt").read_text() == "beta"
    read = RunRequest.model_validate(
        {"tool": {"server": "fs", "name": "read_text_file", "arguments": {"path": "b.txt"}}}
    )
    run, _ = await app.submit(read, OPERATOR)
    done = await app.wait(run.id, OPERATOR, 10)
    assert done.result["structuredContent"]["content"] == "beta"
    data, _, _ = await app.read_logs(run.id, OPERATOR, Stream.STDOUT, 0, 1000)
    assert b"beta" in data
    [attempt] = await app.attempts(run.id, OPERATOR)
    assert attempt.isolation == "gateway (fs)"
    page = await app.list_runs(OPERATOR, RunFilter(tool="fs.read_text_file"))
    assert [r.id for r in page.runs] == [run.id]
    # An fs refusal during the attempt is the tool's error.
    outside = RunRequest.model_validate(
        {"tool": {"name": "fs.read_text_file", "arguments": {"path": "/etc/passwd"}}}
    )
    run, _ = await app.submit(outside, OPERATOR)
    done = await app.wait(run.id, OPERATOR, 10)
    assert done.failure is not None
    assert done.failure.kind == FailureKind.TOOL_ERROR
    assert "outside sandbox directory" in done.failure.message


async def test_submit_refuses_what_it_can_know(app: App) -> None:
    with pytest.raises(UnknownTool):
        await app.submit(RunRequest.model_validate({"tool": {"name": "nope.x"}}), OPERATOR)
    with pytest.raises(UnknownTool):
        await app.submit(RunRequest.model_validate({"tool": {"name": "fs.nope"}}), OPERATOR)
    bad = {"tool": {"name": "fs.read_text_file", "arguments": {"path": 1}}}
    with pytest.raises(InvalidArguments):
        await app.submit(RunRequest.model_validate(bad), OPERATOR)


async def test_without_a_gateway_a_tool_run_waits_for_a_worker_with_its_server(
    tmp_path: Path,
) -> None:
    app = await _app(tmp_path)
    try:
        request = RunRequest.model_validate({"tool": {"name": "fs.read_text_file"}})
        run, _ = await app.submit(request, OPERATOR)
        assert run.worker_labels == ["mcp.fs"]
        assert app.tools.worker_labels() == frozenset()
        # Nothing this process's worker (no labels) could claim: the run waits for a worker
        # whose gateway has fs (issue 14), instead of failing on the first worker to look.
        assert await app.store.next_available_at(frozenset()) is None
        assert (await app.get(run.id, OPERATOR)).status == RunStatus.PENDING
    finally:
        await asyncio.wait_for(app.close(), 10)


async def test_without_a_gateway_a_tool_run_fails_to_start(tmp_path: Path) -> None:
    # A worker labelled by hand as having fs, in a process without a gateway.
    app = await _app(tmp_path, worker_labels=["mcp.fs"])
    try:
        assert not app.tools.configured
        assert await app.tools.list_tools(VIEWER) == ()
        request = RunRequest.model_validate({"tool": {"name": "fs.read_text_file"}})
        run, _ = await app.submit(request, OPERATOR)
        done = await app.wait(run.id, OPERATOR, 10)
        assert done.failure is not None
        assert done.failure.kind == FailureKind.SPAWN_ERROR
        assert "no MCP servers are configured" in done.failure.message
    finally:
        await asyncio.wait_for(app.close(), 10)


async def test_a_task_can_be_a_tool_run(app: App) -> None:
    from mcpexec.tasks import TaskDefinition

    task = TaskDefinition.model_validate(
        {"name": "read-a", "tool": {"name": "fs.read_text_file", "arguments": {"path": "a.txt"}}}
    )
    await app.tasks.define(task, ADMIN)
    run, _ = await app.submit(RunRequest.model_validate({"task": "read-a"}), OPERATOR)
    done = await app.wait(run.id, OPERATOR, 10)
    assert done.status == RunStatus.COMPLETED, done.failure
    assert done.spec.kind == "tool"
    assert done.result["structuredContent"]["content"] == "alpha"
