"""MCP tools of workflows (issue 16): ``start_workflow``, ``get_workflow_status``,
``list_workflows``, ``approve_gate``, ``rollback_workflow``, ``cancel_workflow``, and the tools
workflows and their steps expose by name (``mcp_tool:``). They call the App only and share the
REST views."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, TextContent
from mcp.types import Tool as MCPTool
from pydantic import BaseModel, ConfigDict, Field

from mcpexec.mcp_server import schemas as sch
from mcpexec.mcp_server.common import Deps, tool_errors
from mcpexec.workflows.exposed import (
    DEFAULT_WAIT_S,
    MAX_WAIT_S,
    WAIT_S,
    ExposedTool,
    takes_wait,
)
from mcpexec.workflows.ops import run_view, workflow_view

RunId = Annotated[str, Field(description="workflow run id (from start_workflow)")]
Step = Annotated[str | None, Field(description="step name")]


class WorkflowRunInfo(BaseModel):
    """A workflow run: status, steps (status, run, last valid checkpoint), error."""

    model_config = ConfigDict(extra="allow")

    id: str
    workflow: str
    status: str


class WorkflowInfo(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    version: int


class WorkflowList(BaseModel):
    workflows: list[WorkflowInfo]
    runs: list[WorkflowRunInfo] = Field(default_factory=list)


_STATUS = {
    "enum": ["queued", "running", "waiting", "completed", "failed", "cancelled", "rolled_back"]
}
_RUN: sch.Schema = {
    "type": "object",
    "properties": {
        "id": sch.STR,
        "workflow": sch.STR,
        "status": _STATUS,
        "steps": {"type": "object", "description": "status, run_id, checkpoint per step"},
    },
}
_RUN_ID = {"run_id": sch.STR}
_STEP = {"step": sch.STR}


def _schemas() -> dict[str, tuple[sch.Schema, sch.Schema]]:
    """Compact published schemas (tools/list is read on every session)."""
    params = {"type": "object", "description": "the workflow's parameters"}
    listed = {
        "workflows": {"type": "array", "items": {"type": "object"}},
        "runs": {"type": "array", "items": {"type": "object"}},
    }
    return {
        "start_workflow": (
            sch._obj({"workflow": sch.STR, "params": params}, ("workflow",)),
            _RUN,
        ),
        "get_workflow_status": (sch._obj(_RUN_ID, ("run_id",)), _RUN),
        "list_workflows": (sch._obj({"runs": {**sch.BOOL, "default": False}}), sch._obj(listed)),
        "approve_gate": (sch._obj({**_RUN_ID, **_STEP}, ("run_id",)), _RUN),
        "rollback_workflow": (sch._obj({**_RUN_ID, **_STEP}, ("run_id", "step")), _RUN),
        "cancel_workflow": (sch._obj(_RUN_ID, ("run_id",)), _RUN),
    }


def register_workflow_tools(server: MCPServer[Any], deps: Deps) -> None:
    app = deps.app

    async def act(run_id: str, action: str, step: str | None = None) -> WorkflowRunInfo:
        with tool_errors():
            rec = await app.workflows.act(run_id, action, deps.principal(), step)
            return WorkflowRunInfo.model_validate(run_view(rec))

    @server.tool(
        title="Start workflow",
        annotations=sch.hints(read_only=False, destructive=False),
        description="Start a run of a defined workflow (NAME or NAME@VERSION).",
    )
    async def start_workflow(
        workflow: Annotated[str, Field(description="workflow name")],
        params: Annotated[dict[str, Any] | None, Field(description="its parameters")] = None,
    ) -> WorkflowRunInfo:
        with tool_errors():
            rec = await app.workflows.start(workflow, params or {}, deps.principal())
            return WorkflowRunInfo.model_validate(run_view(rec))

    @server.tool(
        title="Get workflow status",
        annotations=sch.hints(read_only=True),
        description="A workflow run's status, steps and checkpoints.",
    )
    async def get_workflow_status(run_id: RunId) -> WorkflowRunInfo:
        with tool_errors():
            rec = await app.workflows.get_run(run_id, deps.principal())
            return WorkflowRunInfo.model_validate(run_view(rec))

    @server.tool(
        title="List workflows",
        annotations=sch.hints(read_only=True),
        description="Defined workflows; runs=true adds recent workflow runs.",
    )
    async def list_workflows(runs: bool = False) -> WorkflowList:
        with tool_errors():
            principal = deps.principal()
            found = await app.workflows.list_workflows(principal)
            recent = await app.workflows.list_runs(principal, limit=50) if runs else []
            return WorkflowList(
                workflows=[WorkflowInfo.model_validate(workflow_view(r)) for r in found],
                runs=[WorkflowRunInfo.model_validate(run_view(r)) for r in recent],
            )

    @server.tool(
        title="Approve gate",
        annotations=sch.hints(read_only=False, destructive=False),
        description="Approve a waiting manual gate (step: when several wait).",
    )
    async def approve_gate(run_id: RunId, step: Step = None) -> WorkflowRunInfo:
        return await act(run_id, "approve", step)

    @server.tool(
        title="Roll back workflow",
        annotations=sch.hints(read_only=False, destructive=True),
        description="Roll back to before a step (its rollback runs), then pause.",
    )
    async def rollback_workflow(
        run_id: RunId, step: Annotated[str, Field(description="step name")]
    ) -> WorkflowRunInfo:
        return await act(run_id, "rollback", step)

    @server.tool(
        title="Cancel workflow",
        annotations=sch.hints(read_only=False, destructive=True),
        description="Cancel a workflow run and its running steps.",
    )
    async def cancel_workflow(run_id: RunId) -> WorkflowRunInfo:
        return await act(run_id, "cancel")

    sch.publish(server, _schemas())


class ExposedWorkflowTools:
    """The tools workflows expose (``mcp_tool:``), listed and called beside the built-in ones.
    They are per tenant and change when a workflow is defined, so they are not registered in
    the SDK's tool manager: ``McpexecServer`` asks this for them on every ``tools/list`` and
    for a name it does not know on ``tools/call``. A name that a built-in tool has is not
    listed (the built-in one answers)."""

    def __init__(self, deps: Deps, builtin: Callable[[str], bool]) -> None:
        self.deps = deps
        self._builtin = builtin

    async def list(self) -> list[MCPTool]:
        with tool_errors():
            found = await self.deps.app.workflows.exposed_tools(self.deps.principal())
        return [
            MCPTool(
                name=t.name,
                title=t.name.replace("_", " "),
                description=t.description,
                input_schema=_tool_input(t),
                output_schema=_RUN,
                annotations=sch.hints(read_only=False, destructive=False),
            )
            for t in found
            if not self._builtin(t.name)
        ]

    async def call(self, name: str, arguments: dict[str, Any]) -> CallToolResult:
        with tool_errors():
            rec = await self.deps.app.workflows.call_tool(name, arguments, self.deps.principal())
        view = run_view(rec)
        return CallToolResult(
            content=[TextContent(type="text", text=json.dumps(view, default=str))],
            structured_content=view,
        )


def _tool_input(tool: ExposedTool) -> sch.Schema:
    """The workflow's parameter schema, plus ``wait_s`` (unless a parameter has that name)."""
    schema: sch.Schema = {"type": "object", **tool.params}
    properties = dict(schema.get("properties", {}))
    if takes_wait(tool):
        properties[WAIT_S] = {
            "type": "number",
            "minimum": 0,
            "maximum": MAX_WAIT_S,
            "default": DEFAULT_WAIT_S,
            "description": "seconds to wait for the step to be done",
        }
    schema["properties"] = properties
    return schema
