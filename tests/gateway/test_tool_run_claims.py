"""Tool runs are claimed only by workers whose gateway has the run's server (issue 14): a tool
run carries its server's worker label (``mcp.<server>``), every worker adds the labels of the
servers its process's gateway has, asked at each claim (a reload changes them)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mcpexec.app import App, Principal
from mcpexec.executor.fake import FakeExecutor
from mcpexec.models import RunRequest, RunStatus, utcnow
from mcpexec.settings import Settings
from mcpexec.store.base import ClaimLimits
from mcpexec.store.blobs import FileBlobStore
from mcpexec.store.memory import MemoryStore
from mcpexec.tools_service import ToolsService, server_label

from .helpers import npm_binds, npm_server

pytestmark = pytest.mark.anyio
ADMIN = Principal("t0", "test", "admin", "default")


def test_server_labels_are_valid_worker_labels_and_distinct() -> None:
    from mcpexec.models import check_worker_labels

    names = ["everything", "fs", "GitHub", "github", "a_b-c", "x" * 64, "x" * 63, "-_-", "Ab-"]
    labels = [server_label(n) for n in names]
    assert labels[:2] == ["mcp.everything", "mcp.fs"]
    assert len(set(labels)) == len(labels)
    for label in labels:
        assert check_worker_labels([label]) == [label]
    assert ToolsService.run_worker_labels(None, ["gpu"]) == ("gpu",)


def _config(path: Path, *names: str) -> None:
    server = {**npm_server("TEST_MCP_EVERYTHING", read_only=npm_binds()), "start": "eager"}
    path.write_text(json.dumps({"mcpServers": dict.fromkeys(names, server)}))


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    config = tmp_path / "mcp_servers.json"
    _config(config, "everything")
    settings = Settings(home=tmp_path, poll_s=0.05, heartbeat_s=0.05, mcp_config=config)
    app = App(settings, MemoryStore(), FakeExecutor(), FileBlobStore(tmp_path / "artifacts"))
    await app.open()
    yield app
    await asyncio.wait_for(app.close(), 30)


def _tool_run(server: str, **extra: Any) -> RunRequest:
    tool = {"server": server, "name": "echo", "arguments": {"message": "hi"}}
    return RunRequest.model_validate({"tool": tool, **extra})


async def test_only_a_worker_with_the_server_claims_its_tool_runs(app: App) -> None:
    run, _ = await app.submit(_tool_run("everything", worker_labels=["gpu"]), ADMIN)
    assert run.worker_labels == ["gpu", "mcp.everything"]
    plain, _ = await app.submit(RunRequest.model_validate({"command": ["true"]}), ADMIN)
    assert plain.worker_labels == []
    assert app.tools.worker_labels() == {"mcp.everything"}
    now = utcnow()
    lease = now + timedelta(seconds=30)
    # A worker without the gateway (no labels) takes the command run, not the tool run.
    without = await app.store.claim("w-none", 5, now, lease, ClaimLimits())
    assert [c.run.id for c in without] == [plain.id]
    gpu_only = await app.store.claim(
        "w-gpu", 5, now, lease, ClaimLimits(worker_labels=frozenset({"gpu"}))
    )
    assert gpu_only == []
    labels = frozenset({"gpu"}) | app.tools.worker_labels()
    with_gateway = await app.store.claim("w-gw", 5, now, lease, ClaimLimits(worker_labels=labels))
    assert [c.run.id for c in with_gateway] == [run.id]


async def test_the_process_worker_claims_them_also_after_a_reload(app: App) -> None:
    await app.start_background(workers=1, reaper=False)
    run, _ = await app.submit(_tool_run("everything"), ADMIN)
    done = await app.wait(run.id, ADMIN, 30)
    assert done.status == RunStatus.COMPLETED, done.failure
    # A server added by a reload: its label is there at the next claim.
    assert app.settings.mcp_config is not None
    _config(app.settings.mcp_config, "everything", "second")
    await app.tools.reload(ADMIN)
    assert app.tools.worker_labels() == {"mcp.everything", "mcp.second"}
    second, _ = await app.submit(_tool_run("second"), ADMIN)
    assert second.worker_labels == ["mcp.second"]
    done = await app.wait(second.id, ADMIN, 30)
    assert done.status == RunStatus.COMPLETED, done.failure


async def test_a_batched_tool_run_carries_its_server_label_too(app: App) -> None:
    results = await app.batch.submit_many(
        [_tool_run("everything"), RunRequest.model_validate({"command": ["true"]})], ADMIN
    )
    labels = [r if isinstance(r, BaseException) else r[0].worker_labels for r in results]
    assert labels == [["mcp.everything"], []]
