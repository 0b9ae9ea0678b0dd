"""A tiny downstream MCP server (the SDK's MCPServer over stdio or Streamable HTTP) with the
misbehaviours the gateway must survive: hangs, progress then silence, floods, a crash mid-call,
a child that ignores SIGTERM and stdin close, a tool list that changes, and a paginated
``tools/list`` (``FIXTURE_PAGE_SIZE`` tools per page). Run: ``python fixture_server.py
[stdio|http PORT]``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import anyio
from mcp import types
from mcp.server import MCPServer
from mcp.server.mcpserver import Context

PAGE = int(os.environ.get("FIXTURE_PAGE_SIZE", "0"))


class Fixture(MCPServer):
    async def _handle_list_tools(self, ctx, params):  # type: ignore[no-untyped-def]
        tools = await self.list_tools()
        if not PAGE:
            return types.ListToolsResult(tools=tools)
        start = int(params.cursor) if params is not None and params.cursor else 0
        end = start + PAGE
        return types.ListToolsResult(
            tools=tools[start:end], next_cursor=str(end) if end < len(tools) else None
        )


mcp = Fixture("fixture")


@mcp.tool()
def echo(message: str) -> str:
    """Echo the message."""
    return message


@mcp.tool()
def pid() -> int:
    """This server's process id."""
    return os.getpid()


@mcp.tool()
async def hang(seconds: float = 3600.0, marker: str = "") -> str:
    """Sleep (a server that hangs). With ``marker``: create ``marker.started`` first, and
    ``marker`` when cancelled (notifications/cancelled)."""
    if marker:
        with open(f"{marker}.started", "w"):  # noqa: ASYNC230 - one tiny file
            pass
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        if marker:
            with open(marker, "w") as f:  # noqa: ASYNC230 - one tiny write on the way out
                f.write("cancelled")
        raise
    return "woke"


@mcp.tool()
async def progress_then_hang(steps: int, interval: float, ctx: Context) -> str:
    """Report progress every ``interval`` s for ``steps`` steps, then hang."""
    for i in range(steps):
        await anyio.sleep(interval)
        await ctx.report_progress(i + 1, total=steps, message=f"step {i + 1}")
    await anyio.sleep(3600)
    return "never"


@mcp.tool()
def flood(size: int) -> str:
    """A result of ``size`` characters."""
    return "x" * size


@mcp.tool()
async def crash(delay: float = 0.0) -> str:
    """Exit the whole server mid-call."""
    await anyio.sleep(delay)
    os._exit(3)


@mcp.tool()
def crash_once(marker: str) -> str:
    """Exit the whole server mid-call the first time (``marker`` absent), then answer."""
    if not os.path.exists(marker):
        with open(marker, "w"):
            pass
        os._exit(3)
    return "survived"


@mcp.tool()
def spawn_stubborn_child() -> int:
    """Start a child that ignores SIGTERM and stdin close; return its pid."""
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
        "while True: time.sleep(1)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    return child.pid


@mcp.tool()
def fail(message: str) -> str:
    """Always fails (isError)."""
    raise ValueError(message)


@mcp.tool()
def tricky(payload: dict, items: list, choice: int | str) -> str:  # type: ignore[type-arg]
    """Arguments with nested objects, an array without items and an anyOf."""
    return f"{sorted(payload)} {len(items)} {choice!r}"


@mcp.tool()
async def add_tool(name: str, ctx: Context) -> str:
    """Register a new tool and announce that the list changed."""

    def added() -> str:
        return f"I am {name}"

    mcp.add_tool(added, name=name, description="added at run time")
    await ctx.notify_tools_changed()
    # A 2025-11-25 session hears this; a 2026-07-28 one the listen stream above.
    with contextlib.suppress(Exception):
        await ctx.session.send_tool_list_changed()
    return "added"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "http":
        mcp.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        mcp.run()
