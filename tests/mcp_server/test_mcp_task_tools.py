"""The task and schedule MCP tools, and execute/submit_run with task + params, through the
SDK's in-memory client against a real App."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp import Client
from mcp import types as mt

from mcpexec.mcp_server.server import McpexecServer

pytestmark = pytest.mark.anyio

TASK_TOOLS = [
    "define_task",
    "list_tasks",
    "get_task",
    "create_schedule",
    "list_schedules",
    "update_schedule",
    "delete_schedule",
]
GREETING = {
    "shell": 'echo "hello $MCPEXEC_PARAM_WHO"',
    "params": {"type": "object", "properties": {"who": {"type": "string"}}, "required": ["who"]},
}


def ok(result: mt.CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


def error_text(result: mt.CallToolResult) -> str:
    assert result.is_error
    block = result.content[0]
    assert isinstance(block, mt.TextContent)
    return block.text


async def test_task_tools_are_typed_and_small(server: McpexecServer) -> None:
    async with Client(server) as client:
        listed = await client.list_tools()
    tools = {t.name: t for t in listed.tools if t.name in TASK_TOOLS}
    assert sorted(tools) == sorted(TASK_TOOLS)
    for tool in tools.values():
        assert tool.output_schema is not None
        assert tool.output_schema["type"] == "object"
    size = sum(
        len(json.dumps(t.model_dump(mode="json", exclude_none=True))) for t in tools.values()
    )
    assert size < 6000, size  # tools/list is read on every session: keep these lean
    assert "cron" in tools["create_schedule"].input_schema["properties"]


async def test_define_get_list_and_run_a_task(server: McpexecServer) -> None:
    async with Client(server) as client:
        first = ok(await client.call_tool("define_task", {"name": "greet", "definition": GREETING}))
        assert (first["version"], first["created"]) == (1, True)
        same = ok(await client.call_tool("define_task", {"name": "greet", "definition": GREETING}))
        assert (same["version"], same["created"]) == (1, False)
        yaml_text = (
            "shell: echo v2 $MCPEXEC_PARAM_WHO\n"
            "params: {type: object, properties: {who: {type: string}}}\n"
        )
        second = ok(
            await client.call_tool("define_task", {"name": "greet", "definition": yaml_text})
        )
        assert second["version"] == 2
        got = ok(await client.call_tool("get_task", {"name": "greet@1"}))
        assert got["definition"]["shell"] == GREETING["shell"]
        listed = ok(await client.call_tool("list_tasks", {}))
        assert [(t["name"], t["version"]) for t in listed["tasks"]] == [("greet", 2)]

        done = ok(
            await client.call_tool(
                "execute", {"task": "greet@1", "params": {"who": "'; rm -rf / #"}}
            )
        )
        assert done["status"] == "completed"
        assert done["stdout"] == "hello '; rm -rf / #\n"
        queued = ok(await client.call_tool("submit_run", {"task": "greet", "params": {"who": "x"}}))
        assert queued["created"] is True

        bad = error_text(await client.call_tool("execute", {"task": "greet", "params": {"who": 3}}))
        assert "'who'" in bad
        assert "invalid_request" in bad
        broken = error_text(
            await client.call_tool("define_task", {"name": "greet", "definition": {"shell": 5}})
        )
        assert "shell" in broken
        missing = error_text(await client.call_tool("get_task", {"name": "nope"}))
        assert "task_not_found" in missing


async def test_schedule_tools(server: McpexecServer) -> None:
    async with Client(server) as client:
        ok(await client.call_tool("define_task", {"name": "greet", "definition": GREETING}))
        bad = error_text(
            await client.call_tool("create_schedule", {"task": "greet", "cron": "0 3 * * *"})
        )
        assert "'who'" in bad  # the required parameter, named
        wrong_tz = error_text(
            await client.call_tool(
                "create_schedule", {"task": "greet", "every": "1m", "timezone": "Mars/Base"}
            )
        )
        assert "timezone" in wrong_tz
        created = ok(
            await client.call_tool(
                "create_schedule",
                {
                    "task": "greet",
                    "cron": "0 3 * * *",
                    "timezone": "Europe/Berlin",
                    "params": {"who": "nightly"},
                },
            )
        )
        assert created["next_fire_at"].endswith(("+01:00", "+02:00"))
        assert created["overlap"] == "skip"
        listed = ok(await client.call_tool("list_schedules", {}))
        assert [s["id"] for s in listed["schedules"]] == [created["id"]]
        updated = ok(
            await client.call_tool(
                "update_schedule", {"schedule_id": created["id"], "changes": {"paused": True}}
            )
        )
        assert (updated["paused"], updated["next_fire_at"]) == (True, None)
        wrong = error_text(
            await client.call_tool(
                "update_schedule", {"schedule_id": created["id"], "changes": {"cron": "nope"}}
            )
        )
        assert "cron" in wrong
        gone = ok(await client.call_tool("delete_schedule", {"schedule_id": created["id"]}))
        assert gone == {"deleted": created["id"]}
        again = error_text(
            await client.call_tool("delete_schedule", {"schedule_id": created["id"]})
        )
        assert "schedule_not_found" in again
