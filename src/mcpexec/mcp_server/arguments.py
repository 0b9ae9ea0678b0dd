"""Tool arguments checked before a tool runs: unknown names are refused (a misspelt
``timeout`` silently ignored would run a job with the wrong limits), and bad values are
answered with one sentence per field instead of a raw pydantic report."""

from __future__ import annotations

from typing import Any

from mcp import types
from mcp.server.mcpserver import MCPServer
from pydantic import ValidationError

from mcpexec.mcp_server.common import describe


def check_arguments(server: MCPServer[Any], params: types.CallToolRequestParams) -> str | None:
    """What is wrong with ``params.arguments`` for its tool, or None (also for unknown tools:
    the SDK answers those)."""
    tool = server._tool_manager.get_tool(params.name)  # no public lookup in mcp 2.3
    if tool is None:
        return None
    arguments = params.arguments or {}
    accepted = list(tool.parameters.get("properties", {}))
    unknown = [name for name in arguments if name not in accepted]
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        return f"{params.name} does not take {names}; its arguments are: {', '.join(accepted)}"
    meta = tool.fn_metadata
    try:
        meta.arg_model.model_validate(meta.pre_parse_json(arguments))
    except ValidationError as exc:
        return f"invalid arguments for {params.name}: {describe(exc)}"
    return None


def error_result(message: str) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=message)], is_error=True
    )
