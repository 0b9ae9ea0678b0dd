"""The gateway on mcpexec's own MCP server: ``list_tools`` and ``call_tool`` over Streamable
HTTP at a real ``serve``'s ``/mcp``, with the real MCP SDK client, reaching a real
server-everything (npm) and ``fs``; absent from tools/list when no gateway is configured."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp import types as mt
from mcp.client.streamable_http import streamable_http_client

from acceptance.conftest import Server, free_port, make_server

from .helpers import npm_server

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def gateway_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("wiring-mcp")
    home, box = root / "home", root / "box"
    home.mkdir()
    box.mkdir()
    (box / "note.txt").write_text("a note\n")
    config = root / "mcp_servers.json"
    config.write_text(json.dumps({"mcpServers": {"everything": npm_server("TEST_MCP_EVERYTHING")}}))
    srv = Server(
        home=home,
        port=free_port(),
        workers=1,
        extra_env={
            "MCPEXEC_SANDBOX": "none",
            "MCPEXEC_MCP_CONFIG": str(config),
            "MCPEXEC_SANDBOX_DIRECTORY": str(box),
        },
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        assert "Traceback" not in srv.log(), srv.log()[-3000:]


@asynccontextmanager
async def connect(server: Server) -> AsyncIterator[Client]:
    async with httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {server.token}"}, timeout=httpx2.Timeout(30, read=120)
    ) as http:
        transport = streamable_http_client(f"{server.url}/mcp", http_client=http)
        async with Client(transport, read_timeout_seconds=60) as client:
            yield client


def data(result: mt.CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def test_list_tools_small_then_with_schemas(gateway_serve: Server) -> None:
    async with connect(gateway_serve) as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        assert {"list_tools", "call_tool", "execute", "submit_run"} <= set(listed)
        assert listed["list_tools"].annotations is not None
        assert listed["list_tools"].annotations.read_only_hint is True
        small = data(await client.call_tool("list_tools", {}))["tools"]
        names = {t["name"] for t in small}
        assert {"everything.echo", "fs.read_text_file"} <= names
        assert all("inputSchema" not in t for t in small)
        full = data(await client.call_tool("list_tools", {"server": "everything"}))["tools"]
        assert {t["name"].split(".")[0] for t in full} == {"everything"}
        echo = next(t for t in full if t["name"] == "everything.echo")
        assert echo["inputSchema"]["required"] == ["message"]
        unknown = await client.call_tool("list_tools", {"server": "nope"})
        assert unknown.is_error
        assert "unknown_tool" in unknown.content[0].text  # type: ignore[union-attr]


async def test_call_tool_relays_results_progress_and_refusals(gateway_serve: Server) -> None:
    async with connect(gateway_serve) as client:
        echo = data(
            await client.call_tool(
                "call_tool", {"name": "everything.echo", "arguments": {"message": "hi"}}
            )
        )
        assert echo["tool"] == "everything.echo"
        assert echo["output"] == {"content": "Echo: hi"}
        seen: list[tuple[float, float | None]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append((progress, total))

        long = await client.call_tool(
            "call_tool",
            {
                "name": "everything.trigger-long-running-operation",
                "arguments": {"duration": 0.6, "steps": 3},
            },
            progress_callback=on_progress,
        )
        assert "completed" in data(long)["output"]["content"]
        assert seen == [(1, 3), (2, 3), (3, 3)]
        blocked = await client.call_tool(
            "call_tool", {"name": "read_text_file", "arguments": {"path": "/etc/passwd"}}
        )
        assert blocked.is_error
        text = blocked.content[0].text  # type: ignore[union-attr]
        assert "Path validation failed: Path '/etc/passwd' is outside sandbox directory" in text
        bad = await client.call_tool(
            "call_tool", {"name": "everything.echo", "arguments": {"message": 1}}
        )
        assert bad.is_error
        assert "invalid_arguments" in bad.content[0].text  # type: ignore[union-attr]
        note = data(
            await client.call_tool(
                "call_tool", {"name": "fs.read_text_file", "arguments": {"path": "note.txt"}}
            )
        )
        assert note["output"]["content"] == "a note\n"


async def test_submit_run_takes_a_tool(gateway_serve: Server) -> None:
    async with connect(gateway_serve) as client:
        tool = {"name": "everything.get-sum", "arguments": {"a": 20, "b": 22}}
        submitted = data(await client.call_tool("submit_run", {"tool": tool}))
        run = data(await client.call_tool("get_run", {"run_id": submitted["run_id"], "wait_s": 30}))
        assert run["status"] == "completed", run
        assert "42" in run["result"]["content"][0]["text"]
        bad = await client.call_tool("submit_run", {"tool": {"name": "no-server"}})
        assert bad.is_error
        assert "server" in bad.content[0].text  # type: ignore[union-attr]


async def test_execute_takes_a_tool_and_waits_for_its_result(gateway_serve: Server) -> None:
    async with connect(gateway_serve) as client:
        tool = {"name": "everything.get-sum", "arguments": {"a": 40, "b": 2}}
        run = data(await client.call_tool("execute", {"tool": tool, "wait_s": 30}))
        assert run["status"] == "completed", run
        assert "42" in run["result"]["content"][0]["text"]
        assert data(await client.call_tool("get_run", {"run_id": run["run_id"]}))["kind"] == "tool"
        bad = await client.call_tool("execute", {"tool": {"name": "no-server"}})
        assert bad.is_error
        assert "server" in bad.content[0].text  # type: ignore[union-attr]


async def test_no_gateway_tools_without_a_gateway(tmp_path: Any) -> None:
    srv = make_server(tmp_path, workers=0)
    srv.start()
    try:
        async with connect(srv) as client:
            names = {t.name for t in (await client.list_tools()).tools}
        assert "execute" in names
        assert not {"list_tools", "call_tool"} & names
    finally:
        srv.stop()
