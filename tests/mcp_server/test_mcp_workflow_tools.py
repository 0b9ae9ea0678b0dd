"""The workflow MCP tools through the SDK's in-memory client against a real App running the
workflow engine (SQLite, real processes, the fake agent CLI)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from mcpexec.app import App
from mcpexec.mcp_server.server import McpexecServer, build_mcp_server
from workflow_helpers import PIPELINE, workflow_app

from .test_mcp_task_tools import error_text, ok

pytestmark = pytest.mark.anyio

WORKFLOW_TOOLS = [
    "start_workflow",
    "get_workflow_status",
    "list_workflows",
    "approve_gate",
    "rollback_workflow",
    "cancel_workflow",
]
GATED = "name: gated\nsteps:\n  build: {shell: 'true'}\n  review: {needs: [build], gate: manual}\n"


@pytest.fixture
async def wf_app(tmp_path: Path) -> AsyncIterator[App]:
    async with workflow_app(tmp_path) as app:
        yield app


@pytest.fixture
async def wf_server(wf_app: App) -> AsyncIterator[McpexecServer]:
    srv = build_mcp_server(wf_app, local=True, progress_interval_s=0.2)
    yield srv
    await srv.watcher.close()


async def status_until(client: Client, run_id: str, status: str) -> dict[str, Any]:
    import anyio

    with anyio.fail_after(30):
        while True:
            found = ok(await client.call_tool("get_workflow_status", {"run_id": run_id}))
            if found["status"] == status:
                return found
            await anyio.sleep(0.05)


async def test_workflow_tools_are_typed_and_small(wf_server: McpexecServer) -> None:
    async with Client(wf_server) as client:
        listed = await client.list_tools()
    tools = {t.name: t for t in listed.tools if t.name in WORKFLOW_TOOLS}
    assert sorted(tools) == sorted(WORKFLOW_TOOLS)
    size = sum(
        len(json.dumps(t.model_dump(mode="json", exclude_none=True))) for t in tools.values()
    )
    assert size < 6000, size


async def test_start_follow_and_finish_a_pipeline_over_mcp(
    wf_app: App, wf_server: McpexecServer
) -> None:
    from workflow_helpers import ADMIN

    await wf_app.workflows.define(PIPELINE, ADMIN)
    async with Client(wf_server) as client:
        listed = ok(await client.call_tool("list_workflows", {}))
        assert [w["name"] for w in listed["workflows"]] == ["pipeline"]
        started = ok(
            await client.call_tool(
                "start_workflow", {"workflow": "pipeline", "params": {"feature": "test-auth"}}
            )
        )
        done = await status_until(client, started["id"], "completed")
        assert done["steps"]["verifier"]["checkpoint"]["status"] == "complete"
        bad = await client.call_tool(
            "start_workflow", {"workflow": "pipeline", "params": {"feature": "'; rm -rf /; #"}}
        )
        assert "feature" in error_text(bad)
        unknown = await client.call_tool("get_workflow_status", {"run_id": "0" * 32})
        assert "no workflow run" in error_text(unknown)


async def test_approve_and_cancel_over_mcp(wf_app: App, wf_server: McpexecServer) -> None:
    from workflow_helpers import ADMIN

    await wf_app.workflows.define(GATED, ADMIN)
    async with Client(wf_server) as client:
        first = ok(await client.call_tool("start_workflow", {"workflow": "gated"}))
        await status_until(client, first["id"], "waiting")
        ok(await client.call_tool("approve_gate", {"run_id": first["id"]}))
        await status_until(client, first["id"], "completed")
        second = ok(await client.call_tool("start_workflow", {"workflow": "gated"}))
        await status_until(client, second["id"], "waiting")
        cancelled = ok(await client.call_tool("cancel_workflow", {"run_id": second["id"]}))
        assert cancelled["status"] == "cancelled"
        again = await client.call_tool("approve_gate", {"run_id": second["id"]})
        assert "cancelled" in error_text(again)


EXPOSED = """
name: feature
description: A feature's pipeline
mcp_tool: run_feature
params:
  type: object
  properties: {feature: {type: string, pattern: "^[a-z0-9-]{3,20}$"}}
  required: [feature]
steps:
  init:
    shell: 'echo "init $MCPEXEC_PARAM_FEATURE"'
    mcp_tool: init_feature
    description: Lay out a feature's files.
  review: {needs: [init], gate: manual}
"""


async def test_a_step_exposed_as_a_named_tool_starts_the_run_and_answers_when_done(
    wf_app: App, wf_server: McpexecServer
) -> None:
    from workflow_helpers import ADMIN

    await wf_app.workflows.define(EXPOSED, ADMIN)
    async with Client(wf_server) as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        tool = listed["init_feature"]
        assert tool.description is not None
        assert "Lay out a feature's files." in tool.description
        assert tool.input_schema["required"] == ["feature"]
        assert tool.input_schema["properties"]["feature"]["pattern"] == "^[a-z0-9-]{3,20}$"
        assert "wait_s" in tool.input_schema["properties"]
        assert "run_feature" in listed

        done = ok(await client.call_tool("init_feature", {"feature": "test-auth"}))
        assert done["steps"]["init"]["status"] == "completed"
        run = await wf_app.get(done["steps"]["init"]["run_id"], ADMIN)
        assert run.labels["workflow_run"] == done["id"]

        # the workflow's own tool answers when the run waits at its gate
        waiting = ok(await client.call_tool("run_feature", {"feature": "other-one"}))
        assert waiting["status"] == "waiting"
        assert waiting["steps"]["review"]["status"] == "waiting"

        bad = await client.call_tool("init_feature", {"feature": "'; rm -rf /; #"})
        assert "feature" in error_text(bad)
        late = await client.call_tool("init_feature", {"feature": "abc", "wait_s": "soon"})
        assert "wait_s: a number of seconds" in error_text(late)
        runs = await wf_app.workflows.list_runs(ADMIN)
        assert len(runs) == 2  # the refused calls started nothing


async def test_a_parameter_named_wait_s_is_the_workflows_own(
    wf_app: App, wf_server: McpexecServer
) -> None:
    from workflow_helpers import ADMIN

    flow = (
        "name: waits\nmcp_tool: run_waits\n"
        "params: {type: object, properties: {wait_s: {type: string}}}\n"
        "steps:\n  a: {shell: 'true'}\n"
    )
    await wf_app.workflows.define(flow, ADMIN)
    async with Client(wf_server) as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        assert listed["run_waits"].input_schema["properties"]["wait_s"] == {"type": "string"}
        done = ok(await client.call_tool("run_waits", {"wait_s": "a parameter"}))
        assert done["params"] == {"wait_s": "a parameter"}


async def test_tool_names_are_unique_in_a_tenant_and_never_shadow_built_in_tools(
    wf_app: App, wf_server: McpexecServer
) -> None:
    from mcpexec.errors import InvalidRequest
    from workflow_helpers import ADMIN

    await wf_app.workflows.define(EXPOSED, ADMIN)
    clash = EXPOSED.replace("name: feature", "name: another")
    with pytest.raises(InvalidRequest, match="already exposed by workflow 'feature'"):
        await wf_app.workflows.define(clash, ADMIN)
    twice = EXPOSED.replace("mcp_tool: init_feature", "mcp_tool: run_feature")
    with pytest.raises(InvalidRequest, match="already exposed by the workflow"):
        await wf_app.workflows.define(twice, ADMIN)
    from mcpexec.app import Principal

    other = Principal("tok-other", "other", "operator", "other")
    assert await wf_app.workflows.exposed_tools(other) == []  # another tenant's are not theirs
    shadow = "name: shadow\nmcp_tool: execute\nsteps:\n  a: {shell: 'true'}\n"
    await wf_app.workflows.define(shadow, ADMIN)
    async with Client(wf_server) as client:
        names = [t.name for t in (await client.list_tools()).tools]
        assert names.count("execute") == 1  # the built-in one
        unknown = await client.call_tool("no_such_tool", {})
        assert unknown.is_error
