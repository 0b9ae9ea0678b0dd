"""Downstream MCP servers (health, restarts) and their tools."""

from __future__ import annotations

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
            "Last error": s["last_error"] or "",
        }
        for s in health["servers"]
    ]
    intro = f"Servers file: {health['config']}" if health["config"] else None
    return view.table("Servers", COLUMNS, rows, empty="No MCP server is configured.", intro=intro)


async def tools(view: View) -> Response:
    rows = [
        {"Tool": t.qualified, "Description": t.description}
        for t in await view.app.tools.list_tools(view.principal)
    ]
    return view.table("Tools", TOOL_COLUMNS, rows, empty="No tool is available.")


ROUTES = [Get("/servers", servers), Get("/servers/tools", tools)]
