"""The protocol details real clients tripped over (issue 9, and the MCP items of issue 8), each
held by a test through the SDK's in-memory client against a real App."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client, MCPError
from mcp import types as mt

from mcpexec.mcp_server.server import McpexecServer

from .mcp_tasks_client import TasksClient, TaskState, poll_until_done, tasks_cancel, tasks_get

pytestmark = pytest.mark.anyio


def structured(result: mt.CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


def error_text(result: mt.CallToolResult) -> str:
    assert result.is_error
    block = result.content[0]
    assert isinstance(block, mt.TextContent)
    return block.text


# -- the tasks extension ---------------------------------------------------------------------
async def test_a_finished_task_is_complete_and_validates_strictly(server: McpexecServer) -> None:
    async with Client(server, extensions=[TasksClient()]) as client:
        task: Any = await client.session.call_tool(
            "execute", {"command": ["echo", "strict"]}, allow_claimed=True
        )
        done = await poll_until_done(client.session, task.task_id, 30)
    assert isinstance(done, TaskState)  # resultType "complete", no unknown fields
    assert done.result_type == "complete"
    assert done.status == "completed"


async def test_a_non_zero_exit_is_a_completed_task_that_keeps_the_output(
    server: McpexecServer,
) -> None:
    async with Client(server, extensions=[TasksClient()]) as client:
        task: Any = await client.session.call_tool(
            "execute", {"shell": "echo partial; exit 3"}, allow_claimed=True
        )
        done = await poll_until_done(client.session, task.task_id, 30)
    assert done.status == "completed"
    assert done.error is None
    assert done.result is not None
    outcome = done.result["structuredContent"]
    assert (outcome["status"], outcome["exit_code"]) == ("failed", 3)
    assert outcome["stdout"] == "partial\n"
    assert not done.result.get("isError")


async def test_a_cancelled_task_carries_no_result(server: McpexecServer) -> None:
    async with Client(server, extensions=[TasksClient()]) as client:
        task: Any = await client.session.call_tool(
            "execute", {"shell": "sleep 300"}, allow_claimed=True
        )
        await tasks_cancel(client.session, task.task_id)
        done = await poll_until_done(client.session, task.task_id, 30)
    assert (done.status, done.result, done.error) == ("cancelled", None, None)


async def test_tasks_methods_need_the_extension(server: McpexecServer) -> None:
    async with Client(server, extensions=[TasksClient()]) as opted:
        task: Any = await opted.session.call_tool(
            "execute", {"command": ["true"]}, allow_claimed=True
        )
    async with Client(server) as plain:
        for call in (tasks_get, tasks_cancel):
            with pytest.raises(MCPError) as caught:
                await call(plain.session, task.task_id)
            assert caught.value.code == -32021
            assert caught.value.error.data is not None
            assert "requiredCapabilities" in caught.value.error.data


# -- tool arguments ----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["auto", "legacy"])  # 2026-07-28 and 2025-11-25
async def test_unknown_arguments_are_refused_by_name(server: McpexecServer, mode: str) -> None:
    async with Client(server, mode=mode) as client:
        result = await client.call_tool("execute", {"shell": "true", "timeout": 5})
        text = error_text(result)
        assert "'timeout'" in text
        assert "timeout_s" in text  # the arguments it does take
        listed = await client.call_tool("list_runs", {"statuses": ["failed"]})
        assert "'statuses'" in error_text(listed)
        # nothing ran
        runs = structured(await client.call_tool("list_runs", {}))["runs"]
    assert runs == []


@pytest.mark.parametrize(
    ("tool", "arguments", "field"),
    [
        ("read_logs", {"run_id": "x", "max_bytes": 0}, "max_bytes"),
        ("read_logs", {"run_id": "x", "offset": -1}, "offset"),
        ("list_runs", {"limit": 1000}, "limit"),
        ("list_runs", {"limit": 0}, "limit"),
        ("get_run", {"run_id": "x", "wait_s": 61}, "wait_s"),
    ],
)
async def test_out_of_range_numbers_name_the_field(
    server: McpexecServer, tool: str, arguments: dict[str, Any], field: str
) -> None:
    async with Client(server) as client:
        text = error_text(await client.call_tool(tool, arguments))
    assert text.startswith(f"invalid arguments for {tool}: {field}: ")
    assert "pydantic" not in text


async def test_a_command_line_as_command_gets_one_actionable_sentence(
    server: McpexecServer,
) -> None:
    async with Client(server) as client:
        text = error_text(await client.call_tool("execute", {"command": "ls -l"}))
    assert 'shell: "ls -l"' in text
    assert "http" not in text
    assert "\n" not in text


# -- logs, resources, prompts, cancel ------------------------------------------------------------
async def test_read_logs_pages_on_character_boundaries(server: McpexecServer) -> None:
    async with Client(server) as client:
        run = structured(
            await client.call_tool("execute", {"command": ["python3", "-c", "print('é' * 3000)"]})
        )
        text, offset, pages = "", 0, 0
        while True:
            page = structured(
                await client.call_tool(
                    "read_logs", {"run_id": run["run_id"], "offset": offset, "max_bytes": 1001}
                )
            )
            pages += 1
            assert "\ufffd" not in page["data"]
            assert page["offset"] == offset
            text += page["data"]
            offset = page["next_offset"]
            if not page["still_writing"] or not page["data"]:
                break
    assert text == "é" * 3000 + "\n"
    assert pages > 5


async def test_read_logs_from_inside_a_character_starts_at_the_next_one(
    server: McpexecServer,
) -> None:
    async with Client(server) as client:
        run = structured(await client.call_tool("execute", {"shell": "printf 'aéb'"}))
        page = structured(
            await client.call_tool("read_logs", {"run_id": run["run_id"], "offset": 2})
        )
    assert (page["offset"], page["data"]) == (3, "b")


@pytest.mark.parametrize("suffix", ["", "/logs/stdout"])
async def test_reading_an_unknown_run_is_invalid_params(server: McpexecServer, suffix: str) -> None:
    async with Client(server) as client:
        with pytest.raises(MCPError) as caught:
            await client.read_resource(f"mcpexec://runs/{'f' * 32}{suffix}")
    assert caught.value.code == -32602
    assert "no run with id" in caught.value.error.message


async def test_reading_an_unknown_stream_is_invalid_params(server: McpexecServer) -> None:
    async with Client(server) as client:
        run = structured(await client.call_tool("execute", {"command": ["true"]}))
        with pytest.raises(MCPError) as caught:
            await client.read_resource(f"mcpexec://runs/{run['run_id']}/logs/stdin")
    assert caught.value.code == -32602
    assert "stdout|stderr" in caught.value.error.message


async def test_no_prompts_capability_and_prompts_get_is_method_not_found(
    server: McpexecServer,
) -> None:
    async with Client(server) as client:
        assert client.server_capabilities.prompts is None
        with pytest.raises(MCPError) as caught:
            await client.get_prompt("anything")
    assert caught.value.code == -32601


async def test_secret_names_are_discoverable(server: McpexecServer) -> None:
    async with Client(server) as client:
        contents = await client.read_resource("mcpexec://secrets")
    block = contents.contents[0]
    assert isinstance(block, mt.TextResourceContents)
    assert block.text == '{"secrets": []}'


async def test_cancel_run_answers_once_the_run_is_cancelled(server: McpexecServer) -> None:
    async with Client(server) as client:
        run_id = structured(await client.call_tool("submit_run", {"shell": "sleep 300"}))["run_id"]
        running = structured(await client.call_tool("get_run", {"run_id": run_id}))
        while running["status"] == "pending":
            running = structured(
                await client.call_tool("get_run", {"run_id": run_id, "wait_s": 0.2})
            )
        cancelled = structured(await client.call_tool("cancel_run", {"run_id": run_id}))
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancel_requested"] is False


# -- long calls ----------------------------------------------------------------------------------
async def test_execute_returns_a_run_that_outlives_its_wait_and_keeps_it_going(
    server: McpexecServer,
) -> None:
    async with Client(server) as client:
        early = structured(
            await client.call_tool("execute", {"shell": "sleep 2; echo late", "wait_s": 0.5})
        )
        assert early["status"] in ("pending", "running")
        assert early["exit_code"] is None
        done = structured(
            await client.call_tool("get_run", {"run_id": early["run_id"], "wait_s": 30})
        )
    assert done["status"] == "completed"
    assert done["attempts"] == 1
