"""``resources/subscribe`` for 2025-11-25 sessions, through the SDK's in-memory ``Client`` in
legacy mode against a real App: updates as output arrives and when the run finishes, refusals,
the per-session bound and the cleanup when the session ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mcp import Client, MCPError
from mcp import types as mt

from mcpexec.bootstrap import build_app
from mcpexec.mcp_server import resources
from mcpexec.mcp_server.server import McpexecServer, build_mcp_server

from .conftest import settings_for
from .subscribe_flow import Updates, structured, subscribe_and_follow

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning"),
]


@pytest.fixture
async def host_server(tmp_path: Path) -> AsyncIterator[McpexecServer]:
    """Its runs execute on the host (no sandbox, so no private /tmp): they see the test's gate
    files."""
    app = build_app(settings_for(tmp_path / "home", sandbox="none"))
    await app.open()
    await app.start_background(workers=1)
    srv = build_mcp_server(app, local=True)
    yield srv
    await srv.watcher.close()
    await asyncio.wait_for(app.close(), 20)


async def test_subscribe_notifies_output_and_completion(
    host_server: McpexecServer, tmp_path: Path
) -> None:
    updates = Updates()
    async with Client(host_server, mode="legacy", message_handler=updates) as client:
        assert client.protocol_version == "2025-11-25"
        await subscribe_and_follow(client, updates, tmp_path / "gates")
        assert host_server.legacy_subscriptions.active_sessions == 1
    # the session ended: its bus listener and sender task are gone
    assert host_server.legacy_subscriptions.active_sessions == 0


async def test_subscribe_refuses_unknown_resources(server: McpexecServer) -> None:
    async with Client(server, mode="legacy") as client:
        for uri in (
            "test://watched-resource",
            "mcpexec://runs/nope",
            "mcpexec://runs/nope/logs/stdin",
        ):
            with pytest.raises(MCPError) as err:
                await client.subscribe_resource(uri)
            assert err.value.error.code == mt.INVALID_PARAMS, uri
        # unsubscribing from something never subscribed is a no-op
        await client.unsubscribe_resource("mcpexec://runs/nope")
    assert server.legacy_subscriptions.active_sessions == 0


async def test_subscriptions_per_session_are_bounded(
    server: McpexecServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resources, "MAX_SUBSCRIPTIONS_PER_SESSION", 2)
    async with Client(server, mode="legacy") as client:
        run_id = structured(await client.call_tool("execute", {"shell": "true"}))["run_id"]
        uris = [f"mcpexec://runs/{run_id}{suffix}" for suffix in ("", "/logs/stdout")]
        for uri in uris:
            await client.subscribe_resource(uri)
        await client.subscribe_resource(uris[0])  # again: still two
        with pytest.raises(MCPError, match="at most 2"):
            await client.subscribe_resource(f"mcpexec://runs/{run_id}/logs/stderr")
        await client.unsubscribe_resource(uris[0])
        await client.subscribe_resource(f"mcpexec://runs/{run_id}/logs/stderr")


async def test_modern_clients_are_not_offered_resources_subscribe(
    server: McpexecServer,
) -> None:
    async with Client(server) as client:
        assert client.protocol_version == "2026-07-28"
        with pytest.raises(MCPError) as err:
            await client.session.subscribe_resource("mcpexec://runs/x")
        assert err.value.error.code == mt.METHOD_NOT_FOUND
