"""MCP tools of the gateway: ``list_tools`` and ``call_tool`` reach the tools of the MCP
servers behind mcpexec (and ``fs``). Registered only when the settings configure a gateway
(``mcp_config`` or ``sandbox_directory``): a server without one keeps its tools/list as it was.

Schemas stay small (tools/list is read by every model on every session): ``list_tools`` gives
names and descriptions, and each tool's ``inputSchema`` only when asked for (``schemas`` or
``server``)."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, ConfigDict, Field

from mcpexec.mcp_server import schemas as sch
from mcpexec.mcp_server.common import Deps, tool_errors


class ToolInfo(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(description="server.tool: what call_tool takes")
    description: str = ""


class ToolList(BaseModel):
    tools: list[ToolInfo]


class ToolCallResult(BaseModel):
    """What the tool answered: ``output`` (its structured content, or its text)."""

    model_config = ConfigDict(extra="allow")

    tool: str
    output: Any = None
    truncated: bool = False
    execution_time_ms: float


def register_gateway_tools(server: MCPServer[Any], deps: Deps) -> None:
    app = deps.app
    if not app.tools.configured:
        return

    @server.tool(
        title="List tools",
        annotations=sch.hints(read_only=True),
        description=(
            "List the tools of the MCP servers behind mcpexec, as server.tool names for "
            "call_tool. Input schemas with schemas=true or a server."
        ),
    )
    async def list_tools(
        server: Annotated[str | None, Field(description="only this server's tools")] = None,
        schemas: bool = False,
    ) -> ToolList:
        with tool_errors():
            found = await app.tools.list_tools(deps.principal(), server)
        full = schemas or server is not None
        tools = []
        for tool in found:
            info: dict[str, Any] = {"name": tool.qualified, "description": tool.description}
            if full:
                info["inputSchema"] = dict(tool.input_schema)
            tools.append(ToolInfo.model_validate(info))
        return ToolList(tools=tools)

    @server.tool(
        title="Call tool",
        annotations=sch.hints(read_only=False),
        description=(
            "Call a tool of an MCP server behind mcpexec (name from list_tools) and return "
            "its output; progress is relayed."
        ),
    )
    async def call_tool(
        ctx: Context,
        name: Annotated[str, Field(description="server.tool (or a unique tool name)")],
        arguments: dict[str, Any] | None = None,
        timeout_s: Annotated[float | None, Field(gt=0, le=3600)] = None,
    ) -> ToolCallResult:
        with tool_errors():
            outcome = await app.tools.call(
                deps.principal(),
                name,
                arguments or {},
                timeout_s=timeout_s,
                progress=ctx.report_progress,
            )
        if outcome.status != "success":
            body = outcome.to_dict()
            error = body.get("error") or {}
            raise ToolError(f"{error.get('message', 'the tool failed')} ({error.get('code')})")
        assert outcome.result is not None
        return ToolCallResult.model_validate(
            {
                "tool": outcome.tool,
                "output": outcome.result.output(),
                "truncated": outcome.result.truncated,
                "execution_time_ms": round(outcome.execution_time_ms, 3),
            }
        )
