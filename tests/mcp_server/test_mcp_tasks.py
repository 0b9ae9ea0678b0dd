"""The tasks extension: opt-in vs not, tasks/get and tasks/cancel, unknown ids, and a task that
outlives the server process that created it."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp import types as mt

from mcpexec.mcp_server.server import McpexecServer

from .mcp_tasks_client import TASKS, Task, TasksClient, poll_until_done, tasks_cancel, tasks_get

pytestmark = pytest.mark.anyio

MCPEXEC = str(Path(sys.executable).parent / "mcpexec")


async def test_server_advertises_the_extension(server: McpexecServer) -> None:
    async with Client(server, extensions=[TasksClient()]) as client:
        extensions = client.server_capabilities.extensions or {}
    assert TASKS in extensions


async def test_opted_in_execute_answers_with_a_task(server: McpexecServer) -> None:
    async with Client(server, extensions=[TasksClient()]) as client:
        task = await client.session.call_tool(
            "execute", {"shell": "sleep 0.3; echo tasked"}, allow_claimed=True
        )
        assert isinstance(task, Task)
        assert task.status == "working"
        assert task.ttl_ms is not None
        assert task.ttl_ms > 0
        assert task.poll_interval_ms == 1000
        assert len(task.task_id) == 32
        done = await poll_until_done(client.session, task.task_id, 30)
    assert done.status == "completed"
    assert done.result is not None
    result = mt.CallToolResult.model_validate(done.result)
    assert not result.is_error
    assert isinstance(result.structured_content, dict)
    assert result.structured_content["stdout"] == "tasked\n"
    assert result.structured_content["run_id"] == task.task_id


async def test_the_client_half_resolves_tasks_transparently(server: McpexecServer) -> None:
    async with Client(server, extensions=[TasksClient()]) as client:
        result = await client.call_tool("execute", {"command": ["sh", "-c", "exit 4"]})
    assert isinstance(result.structured_content, dict)
    assert result.structured_content["exit_code"] == 4


async def test_without_opt_in_execute_blocks(server: McpexecServer) -> None:
    async with Client(server) as client:
        result = await client.call_tool("execute", {"command": ["echo", "blocking"]})
    assert isinstance(result.structured_content, dict)
    assert result.structured_content["stdout"] == "blocking\n"


async def test_invalid_spec_is_a_tool_error_not_a_task(server: McpexecServer) -> None:
    async with Client(server, extensions=[TasksClient()]) as client:
        result = await client.session.call_tool("execute", {}, allow_claimed=True)
    assert isinstance(result, mt.CallToolResult)
    assert result.is_error


async def test_tasks_cancel_cancels_the_run(server: McpexecServer) -> None:
    async with Client(server, extensions=[TasksClient()]) as client:
        task = await client.session.call_tool(
            "execute", {"shell": "sleep 300", "timeout_s": 600}, allow_claimed=True
        )
        assert isinstance(task, Task)
        await tasks_cancel(client.session, task.task_id)
        await tasks_cancel(client.session, task.task_id)  # idempotent
        done = await poll_until_done(client.session, task.task_id, 30)
    assert done.status == "cancelled"


async def test_unknown_task_ids_are_invalid_params(server: McpexecServer) -> None:
    async with Client(server, extensions=[TasksClient()]) as client:
        plain = await client.call_tool("submit_run", {"shell": "true"})
        assert isinstance(plain.structured_content, dict)
        for task_id in ("f" * 32, plain.structured_content["run_id"]):  # a run is not a task
            with pytest.raises(MCPError) as caught:
                await tasks_get(client.session, task_id)
            assert caught.value.code == -32602
            with pytest.raises(MCPError) as caught:
                await tasks_cancel(client.session, task_id)
            assert caught.value.code == -32602


def _params(home: Path, *args: str) -> StdioServerParameters:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "MCPEXEC_HOME": str(home),
        "MCPEXEC_POLL_S": "0.2",
        "MCPEXEC_WORKERS": "2",
    }
    return StdioServerParameters(command=MCPEXEC, args=["mcp", *args], env=env)


async def test_a_task_survives_a_server_restart(tmp_path: Path) -> None:
    home = tmp_path / "home"
    # First process: no workers, so the run is still pending when it exits.
    async with Client(_params(home, "--no-worker"), extensions=[TasksClient()]) as first:
        task: Any = await first.session.call_tool(
            "execute", {"command": ["echo", "after restart"]}, allow_claimed=True
        )
        assert isinstance(task, Task)
        assert (await tasks_get(first.session, task.task_id)).status == "working"
    # Second process on the same home: it runs the task and reports it.
    async with Client(_params(home), extensions=[TasksClient()]) as second:
        done = await poll_until_done(second.session, task.task_id, 60)
    assert done.status == "completed"
    assert done.result is not None
    assert done.result["structuredContent"]["stdout"] == "after restart\n"
