"""Drive mcpexec with fastmcp's Client (run by the fastmcp venv of scripts/mcp-clients, not by
pytest). Usage: fastmcp_client.py tasks|plain stdio MCPEXEC HOME | http URL TOKEN
Prints one JSON object: what the calls returned."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any


async def main(mode: str, kind: str, where: str, secret: str) -> dict[str, Any]:
    if mode == "tasks":
        import fastmcp_tasks  # noqa: F401 - importing it turns on the client's tasks half
    from fastmcp import Client
    from fastmcp.client.transports import StdioTransport, StreamableHttpTransport

    transport: Any
    if kind == "stdio":
        transport = StdioTransport(where, ["mcp"], env={"MCPEXEC_HOME": secret})
    else:
        transport = StreamableHttpTransport(where, headers={"Authorization": f"Bearer {secret}"})
    out: dict[str, Any] = {}
    async with Client(transport, mode="auto") as client:  # type: ignore[call-arg]
        arguments = {"shell": "echo from-fastmcp; exit 3"}
        if mode == "tasks":
            from fastmcp_tasks import call_tool_task

            task = await call_tool_task(client, "execute", arguments)
            out["task_id"] = task.task_id
            result = await task.result()
        else:
            result = await client.call_tool("execute", arguments)
        out["execute"] = result.structured_content
        listed = await client.call_tool("list_runs", {})
        out["list_runs"] = listed.structured_content
    return out


if __name__ == "__main__":
    mode, kind, where, secret = sys.argv[1:5]
    print(json.dumps(asyncio.run(main(mode, kind, where, secret))))
