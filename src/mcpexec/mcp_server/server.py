"""The MCP server over an App: tools, resources and the tasks extension on one ``MCPServer``.

``build_mcp_server(app, local=True)`` is what ``mcpexec mcp`` serves over stdio (the caller is
the local operator); ``build_mcp_server(app, local=False, public_url=…)`` is what ``serve``
mounts at ``/mcp``, where every request needs a bearer token the App knows.
"""

from __future__ import annotations

from typing import Any

from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus

from mcpexec import __version__
from mcpexec.app import App
from mcpexec.mcp_server.auth import AppTokenVerifier
from mcpexec.mcp_server.common import Deps
from mcpexec.mcp_server.resources import LegacySubscriptions, RunWatcher, register_resources
from mcpexec.mcp_server.tasks_ext import TasksExtension
from mcpexec.mcp_server.tools import register_tools

INSTRUCTIONS = (
    "mcpexec runs commands, shell strings and scripts durably and isolated. Use `execute` to "
    "run something and get its output; `submit_run` for long work, then `get_run` (wait_s) "
    "and `read_logs`. Every run has an id; its artifacts are files it saved."
)


class McpexecServer(MCPServer[Any]):
    """An ``MCPServer`` that also owns the watcher behind resource update notifications and
    the ``resources/subscribe`` sessions of 2025-11-25 clients."""

    watcher: RunWatcher
    legacy_subscriptions: LegacySubscriptions


def build_mcp_server(
    app: App,
    *,
    local: bool,
    public_url: str | None = None,
    progress_interval_s: float = 1.0,
) -> McpexecServer:
    """The MCP server for ``app``. ``local`` callers (stdio, in-memory) act as the operator;
    otherwise every request must carry a bearer token (``public_url`` is the server's base URL,
    used in the OAuth protected-resource metadata)."""
    bus = InMemorySubscriptionBus()
    watcher = RunWatcher(app, bus)
    deps = Deps(
        app=app,
        local=local,
        progress_interval_s=progress_interval_s,
        on_run_touched=watcher.touched,
    )
    auth: dict[str, Any] = {}
    if not local:
        base = (public_url or app.settings.url).rstrip("/")
        auth = {
            "token_verifier": AppTokenVerifier(app),
            "auth": AuthSettings(
                issuer_url=base,  # type: ignore[arg-type]  # pydantic coerces the URL
                resource_server_url=f"{base}/mcp",  # type: ignore[arg-type]
                validate_token_resource=False,
            ),
        }
    server = McpexecServer(
        "mcpexec",
        title="mcpexec",
        instructions=INSTRUCTIONS,
        version=__version__,
        extensions=[TasksExtension(deps)],
        subscriptions=bus,
        log_level="WARNING",
        **auth,
    )
    server.watcher = watcher
    server.legacy_subscriptions = LegacySubscriptions(deps, bus)
    register_tools(server, deps)
    register_resources(server, deps)
    server.legacy_subscriptions.register(server)
    return server
