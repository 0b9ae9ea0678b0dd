"""Every MCP tool and its error paths, through the SDK's in-memory ``Client(server)`` against a
real App (SQLite, subprocess executor, in-process workers)."""

from __future__ import annotations

import base64
import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp import types as mt

from mcpexec.app import App
from mcpexec.mcp_server.server import McpexecServer
from mcpexec.models import RunStatus

pytestmark = pytest.mark.anyio

TOOLS = {
    "execute",
    "submit_run",
    "get_run",
    "cancel_run",
    "list_runs",
    "read_logs",
    "list_artifacts",
    "read_artifact",
    "rerun",
    # tasks and schedules (issue 11; tests/mcp_server/test_mcp_task_tools.py)
    "define_task",
    "list_tasks",
    "get_task",
    "create_schedule",
    "list_schedules",
    "update_schedule",
    "delete_schedule",
    # workflows (issue 16; tests/mcp_server/test_mcp_workflow_tools.py)
    "start_workflow",
    "get_workflow_status",
    "list_workflows",
    "approve_gate",
    "rollback_workflow",
    "cancel_workflow",
}


def structured(result: mt.CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


def error_text(result: mt.CallToolResult) -> str:
    assert result.is_error
    block = result.content[0]
    assert isinstance(block, mt.TextContent)
    return block.text


async def test_tools_are_listed_with_descriptions_and_output_schemas(
    server: McpexecServer,
) -> None:
    async with Client(server) as client:
        listed = await client.list_tools()
    tools = {t.name: t for t in listed.tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description
        assert "\n" not in tool.description.strip()
        assert tool.output_schema is not None
        assert tool.output_schema["type"] == "object"
    assert "command" in tools["execute"].input_schema["properties"]


async def test_execute_returns_output_exit_code_result_and_artifacts(
    server: McpexecServer,
) -> None:
    script = (
        'echo out; echo err >&2; echo \'{"answer": 42}\' > "$MCPEXEC_RESULT"; '
        'echo hi > "$MCPEXEC_OUTPUT_DIR/note.txt"; exit 3'
    )
    async with Client(server) as client:
        result = await client.call_tool("execute", {"shell": script})
    data = structured(result)
    assert data["status"] == "failed"
    assert data["exit_code"] == 3
    assert data["failure"]["kind"] == "exit_code"
    assert data["stdout"] == "out\n"
    assert data["stderr"] == "err\n"
    assert data["stdout_truncated"] is False
    assert data["result"] == {"answer": 42}
    assert data["artifacts"] == ["note.txt"]
    assert len(data["run_id"]) == 32
    # the same data as text, for clients that only read content
    block = result.content[0]
    assert isinstance(block, mt.TextContent)
    assert json.loads(block.text)["run_id"] == data["run_id"]


async def test_execute_caps_the_output_tails(server: McpexecServer) -> None:
    async with Client(server) as client:
        result = await client.call_tool(
            "execute", {"command": ["seq", "1", "20000"], "max_bytes": 100}
        )
    data = structured(result)
    assert data["status"] == "completed"
    assert data["stdout_truncated"] is True
    assert data["stdout"].endswith("19999\n20000\n")
    assert len(data["stdout"]) == 100


async def test_execute_reports_progress_when_asked(server: McpexecServer) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    script = 'for i in 1 2 3; do echo "{\\"value\\": 0.$i}" >> "$MCPEXEC_PROGRESS"; sleep 0.4; done'
    async with Client(server) as client:
        result = await client.call_tool("execute", {"shell": script}, progress_callback=on_progress)
    assert structured(result)["status"] == "completed"
    assert seen, "no progress notifications"
    values = [p for p, _, _ in seen]
    assert values == sorted(values)
    assert len(set(values)) == len(values)


async def test_execute_with_invalid_spec_is_a_tool_error(server: McpexecServer) -> None:
    async with Client(server) as client:
        none = await client.call_tool("execute", {})
        both = await client.call_tool("execute", {"shell": "true", "command": ["true"]})
        bad_env = await client.call_tool("submit_run", {"shell": "true", "env": {"MCPEXEC_X": "1"}})
    assert "exactly one of 'command'" in error_text(none)
    assert "exactly one of 'command'" in error_text(both)
    assert "MCPEXEC_" in error_text(bad_env)


async def test_submit_then_get_run_waits_until_done(server: McpexecServer) -> None:
    async with Client(server) as client:
        submitted = structured(
            await client.call_tool("submit_run", {"command": ["sh", "-c", "sleep 0.3; echo done"]})
        )
        assert submitted["created"] is True
        assert submitted["status"] == "pending"
        run = structured(
            await client.call_tool("get_run", {"run_id": submitted["run_id"], "wait_s": 30})
        )
        assert run["status"] == "completed"
        assert run["exit_code"] == 0
        logs = structured(await client.call_tool("read_logs", {"run_id": run["id"]}))
        assert logs["data"] == "done\n"
        assert logs["next_offset"] == 5
        assert logs["still_writing"] is False


async def test_submit_run_is_idempotent_by_key(server: McpexecServer) -> None:
    body = {"shell": "true", "idempotency_key": "k-1"}
    async with Client(server) as client:
        first = structured(await client.call_tool("submit_run", body))
        second = structured(await client.call_tool("submit_run", body))
    assert second["run_id"] == first["run_id"]
    assert second["created"] is False


async def test_read_logs_by_offset_while_running(server: McpexecServer, app: App) -> None:
    async with Client(server) as client:
        run_id = structured(
            await client.call_tool(
                "submit_run", {"shell": "printf abcdef; sleep 30", "timeout_s": 60}
            )
        )["run_id"]
        with anyio.fail_after(20):
            while True:
                part = structured(
                    await client.call_tool(
                        "read_logs", {"run_id": run_id, "offset": 2, "max_bytes": 3}
                    )
                )
                if part["data"]:
                    break
                await app.wait(run_id, _admin(), 0.2)  # bounded wait for the next change
        assert part == {
            "run_id": run_id,
            "stream": "stdout",
            "offset": 2,
            "next_offset": 5,
            "data": "cde",
            "still_writing": True,
        }
        cancelled = structured(await client.call_tool("cancel_run", {"run_id": run_id}))
        assert cancelled["id"] == run_id
        done = structured(await client.call_tool("get_run", {"run_id": run_id, "wait_s": 30}))
        assert done["status"] == "cancelled"


async def test_cancel_run_kills_the_tree_and_refuses_a_finished_run(
    server: McpexecServer, app: App
) -> None:
    # The task is sandboxed (own pid namespace and filesystem): find its child on the host by a
    # unique argument rather than by a pid it writes.
    marker = f"300.{uuid.uuid4().int % 10**9:09d}"
    async with Client(server) as client:
        run_id = structured(
            await client.call_tool(
                "submit_run", {"shell": f"sleep {marker} & wait", "timeout_s": 600}
            )
        )["run_id"]
        with anyio.fail_after(20):
            while not _sleepers(marker):
                await app.wait(run_id, _admin(), 0.1)
        [child] = _sleepers(marker)
        structured(await client.call_tool("cancel_run", {"run_id": run_id}))
        done = structured(await client.call_tool("get_run", {"run_id": run_id, "wait_s": 30}))
        assert done["status"] == "cancelled"
        assert done["failure"]["kind"] == "cancelled"
        assert not _alive(child)
        again = await client.call_tool("cancel_run", {"run_id": run_id})
    assert "already finished (cancelled)" in error_text(again)


async def test_unknown_run_id_is_a_tool_error_everywhere(server: McpexecServer) -> None:
    calls = [
        ("get_run", {}),
        ("cancel_run", {}),
        ("read_logs", {}),
        ("list_artifacts", {}),
        ("read_artifact", {"name": "x"}),
        ("rerun", {}),
    ]
    async with Client(server) as client:
        for name, extra in calls:
            result = await client.call_tool(name, {"run_id": "nope", **extra})
            assert "no run with id 'nope'" in error_text(result), name


async def test_list_runs_filters_and_pages(server: McpexecServer) -> None:
    async with Client(server) as client:
        ids = []
        for _i in range(3):
            data = structured(
                await client.call_tool("execute", {"shell": "true", "labels": {"batch": "b1"}})
            )
            ids.append(data["run_id"])
        structured(await client.call_tool("execute", {"shell": "false"}))
        page1 = structured(
            await client.call_tool("list_runs", {"labels": {"batch": "b1"}, "limit": 2})
        )
        assert [r["id"] for r in page1["runs"]] == ids[::-1][:2]
        page2 = structured(
            await client.call_tool(
                "list_runs", {"labels": {"batch": "b1"}, "cursor": page1["next_cursor"]}
            )
        )
        assert [r["id"] for r in page2["runs"]] == ids[:1]
        assert page2["next_cursor"] is None
        failed = structured(await client.call_tool("list_runs", {"status": ["failed"]}))
        assert [r["status"] for r in failed["runs"]] == ["failed"]
        bad = await client.call_tool("list_runs", {"cursor": "zzz"})
    assert "cursor" in error_text(bad)


async def test_artifacts_text_and_binary(server: McpexecServer) -> None:
    script = (
        'printf "hello\\n" > "$MCPEXEC_OUTPUT_DIR/a.txt"; '
        'printf "\\000\\001\\002" > "$MCPEXEC_OUTPUT_DIR/b.bin"'
    )
    async with Client(server) as client:
        run_id = structured(await client.call_tool("execute", {"shell": script}))["run_id"]
        listed = structured(await client.call_tool("list_artifacts", {"run_id": run_id}))
        assert [a["name"] for a in listed["artifacts"]] == ["a.txt", "b.bin"]
        text = await client.call_tool("read_artifact", {"run_id": run_id, "name": "a.txt"})
        binary = await client.call_tool("read_artifact", {"run_id": run_id, "name": "b.bin"})
        missing = await client.call_tool("read_artifact", {"run_id": run_id, "name": "c"})
    assert structured(text)["text"] == "hello\n"
    assert isinstance(text.content[0], mt.TextContent)
    assert text.content[0].text == "hello\n"
    info = structured(binary)
    assert info["text"] is None
    assert info["size"] == 3
    assert info["truncated"] is False
    block = binary.content[0]
    assert isinstance(block, mt.EmbeddedResource)
    assert isinstance(block.resource, mt.BlobResourceContents)
    assert base64.b64decode(block.resource.blob) == b"\0\1\2"
    assert "no artifact 'c'" in error_text(missing)


async def test_rerun_makes_a_new_run_with_the_same_spec(server: McpexecServer, app: App) -> None:
    async with Client(server) as client:
        first = structured(await client.call_tool("execute", {"command": ["echo", "again"]}))
        again = structured(await client.call_tool("rerun", {"run_id": first["run_id"]}))
        assert again["run_id"] != first["run_id"]
        run = structured(
            await client.call_tool("get_run", {"run_id": again["run_id"], "wait_s": 30})
        )
    assert run["status"] == RunStatus.COMPLETED
    assert run["rerun_of"] == first["run_id"]


async def test_cancelling_the_execute_request_cancels_the_run(
    server: McpexecServer, app: App
) -> None:
    async with Client(server) as client:
        with anyio.move_on_after(1.0):
            await client.call_tool("execute", {"shell": "sleep 300", "labels": {"t": "cx"}})
        page = await app.list_runs(_admin(), _filter(t="cx"))
        (run,) = page.runs
        done = await app.wait(run.id, _admin(), 30)
    assert done.status == RunStatus.CANCELLED


async def test_resources_read_a_run_and_its_logs(server: McpexecServer) -> None:
    async with Client(server) as client:
        run_id = structured(await client.call_tool("execute", {"shell": "echo to-log"}))["run_id"]
        templates = await client.list_resource_templates()
        run = await client.read_resource(f"mcpexec://runs/{run_id}")
        logs = await client.read_resource(f"mcpexec://runs/{run_id}/logs/stdout")
    uris = {t.uri_template for t in templates.resource_templates}
    assert uris == {"mcpexec://runs/{run_id}", "mcpexec://runs/{run_id}/logs/{stream}"}
    content = run.contents[0]
    assert isinstance(content, mt.TextResourceContents)
    assert json.loads(content.text)["status"] == "completed"
    log_content = logs.contents[0]
    assert isinstance(log_content, mt.TextResourceContents)
    assert log_content.text == "to-log\n"


async def test_resource_updates_reach_listeners(server: McpexecServer) -> None:
    async with Client(server) as client:
        run_id = structured(
            await client.call_tool("submit_run", {"shell": "sleep 0.5; echo later"})
        )["run_id"]
        run_uri = f"mcpexec://runs/{run_id}"
        log_uri = f"{run_uri}/logs/stdout"
        updated: set[str] = set()
        async with client.listen(resource_subscriptions=[run_uri, log_uri]) as sub:
            await client.read_resource(run_uri)
            with anyio.fail_after(20):
                async for event in sub:
                    updated.add(str(getattr(event, "uri", "")))
                    if updated >= {run_uri, log_uri}:
                        break
    assert updated >= {run_uri, log_uri}


def _admin() -> Any:
    from mcpexec.mcp_server.auth import LOCAL_OPERATOR

    return LOCAL_OPERATOR


def _filter(**labels: str) -> Any:
    from mcpexec.models import RunFilter

    return RunFilter(labels=labels)


def _sleepers(arg: str) -> list[int]:
    """Host pids of ``sleep ARG`` processes."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[:2] == [b"sleep", arg.encode()]:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        status = stat.read().split()[2]
    return status != "Z"


async def test_submit_run_with_retry_and_run_at(server: McpexecServer) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    body = {
        "shell": "exit 3",
        "retry": {"max_attempts": 2, "delay_s": 0},
        "run_at": later,
        "priority": 5,
    }
    async with Client(server) as client:
        run_id = structured(await client.call_tool("submit_run", body))["run_id"]
        run = structured(await client.call_tool("get_run", {"run_id": run_id}))
    assert run["status"] == "pending"
    assert run["max_attempts"] == 2
    assert run["priority"] == 5
    assert datetime.fromisoformat(run["run_at"]) == datetime.fromisoformat(later)


async def test_no_sdk_span_per_message(server: McpexecServer) -> None:
    # The SDK's default OpenTelemetryMiddleware spans go to the global tracer provider, which
    # mcpexec never installs: dropped (its own traces are tracing.py's). Its other middleware
    # (the request-state boundary) stays.
    from mcp.server._otel import OpenTelemetryMiddleware
    from mcp.server.mcpserver import MCPServer

    sdk_default = MCPServer("plain").middleware
    assert any(isinstance(m, OpenTelemetryMiddleware) for m in sdk_default)  # still the default
    assert not any(isinstance(m, OpenTelemetryMiddleware) for m in server.middleware)
    assert len(server.middleware) == len(sdk_default) - 1


async def test_get_run_is_the_rest_view_without_spec_retry_and_links(
    server: McpexecServer, app: App
) -> None:
    from mcpexec.app import Principal
    from mcpexec.views import BRIEF_OMITS, run_view

    async with Client(server) as client:
        submitted = structured(await client.call_tool("submit_run", {"command": ["true"]}))
        brief = structured(
            await client.call_tool("get_run", {"run_id": submitted["run_id"], "wait_s": 30})
        )
        detailed = structured(
            await client.call_tool("get_run", {"run_id": submitted["run_id"], "detail": True})
        )
    run = await app.get(submitted["run_id"], Principal("local", "local", "admin", "default"))
    full = run_view(run)
    assert set(BRIEF_OMITS) <= set(full)
    assert set(brief) == set(full) - set(BRIEF_OMITS) | {"cancel_requested"}
    assert {k: v for k, v in full.items() if k in brief} == {
        k: v for k, v in brief.items() if k in full
    }
    assert detailed["spec"] == full["spec"]
