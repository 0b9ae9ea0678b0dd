"""Downstream MCP servers (health, restarts) and their tools."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import Response

from mcpexec.dashboard.page import Column, Get, Nav, View

NAV = Nav("Servers", "/servers", 60)
COLUMNS = [
    Column("Server"),
    Column("Transport"),
    Column("State"),
    Column("Tools"),
    Column("Restarts"),
    Column("In flight"),
    Column("Sandbox"),
    Column("Last error"),
]
TOOL_COLUMNS = [Column("Tool", mono=True), Column("Description")]


async def servers(view: View) -> Response:
    health = view.app.tools.servers(view.principal)
    rows = [
        {
            "Server": s["name"],
            "Transport": s["transport"],
            "State": s["state"],
            "Tools": s["tool_count"],
            "Restarts": s["restarts"],
            "In flight": s["in_flight"],
            "Sandbox": _sandbox(s),
            "Last error": s["last_error"] or "",
        }
        for s in health["servers"]
    ]
    intro = f"Servers file: {health['config']}" if health["config"] else None
    return view.table("Servers", COLUMNS, rows, empty="No MCP server is configured.", intro=intro)


def _sandbox(server: Mapping[str, object]) -> str:
    """``bwrap`` (``+net``), the memory limit and the uid it runs as (a root serve's), ``OFF
    (config)`` for an opt-out, or ``-``."""
    if server.get("sandbox") is None:
        return "-"
    if not server["sandbox"]:
        return "OFF (config)" if server.get("sandbox_from") == "config" else "off"
    limits = server.get("limits")
    limits = limits if isinstance(limits, dict) else {}
    memory, uid = limits.get("memory_mb"), limits.get("uid")
    net = "+net" if server.get("network") else ""
    return f"bwrap{net}" + (f", {memory} MB" if memory else "") + (f", uid {uid}" if uid else "")


async def tools(view: View) -> Response:
    rows = [
        {"Tool": t.qualified, "Description": t.description}
        for t in await view.app.tools.list_tools(view.principal)
    ]
    return view.table("Tools", TOOL_COLUMNS, rows, empty="No tool is available.")


ROUTES = [Get("/servers", servers), Get("/servers/tools", tools)]
