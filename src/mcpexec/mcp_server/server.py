"""The MCP server over an App: tools, resources and the tasks extension on one ``MCPServer``.

``build_mcp_server(app, local=True)`` is what ``mcpexec mcp`` serves over stdio (the caller is
the local operator); ``build_mcp_server(app, local=False, public_url=…)`` is what ``serve``
mounts at ``/mcp``, where every request needs a bearer token the App knows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import mcp.server.mcpserver.server as sdk_server
from mcp.server._otel import OpenTelemetryMiddleware as SdkOtelMiddleware
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.types import CallToolResult, InputRequiredResult
from mcp.types import Tool as MCPTool

from mcpexec import __version__
from mcpexec.app import App
from mcpexec.mcp_server.arguments import check_arguments
from mcpexec.mcp_server.auth import AppTokenVerifier
from mcpexec.mcp_server.common import Deps
from mcpexec.mcp_server.gateway_tools import register_gateway_tools
from mcpexec.mcp_server.resources import LegacySubscriptions, RunWatcher, register_resources
from mcpexec.mcp_server.task_tools import register_task_tools
from mcpexec.mcp_server.tasks_ext import TasksExtension, guard_listen
from mcpexec.mcp_server.tools import register_tools
from mcpexec.mcp_server.workflow_tools import ExposedWorkflowTools, register_workflow_tools
from mcpexec.models import DEFAULT_TENANT

INSTRUCTIONS = (
    "mcpexec runs commands, shell strings and scripts durably and isolated. Use `execute` to "
    "run something and get its output (it waits up to wait_s, then returns the run still "
    "going: continue with `get_run` wait_s); `submit_run` for work to follow later with "
    "`get_run` and `read_logs`. Every run has an id; its artifacts are files it saved."
)


class McpexecServer(MCPServer[Any]):
    """An ``MCPServer`` that also owns the watcher behind resource update notifications and
    the ``resources/subscribe`` sessions of 2025-11-25 clients."""

    watcher: RunWatcher
    legacy_subscriptions: LegacySubscriptions
    exposed: ExposedWorkflowTools | None = None

    def has_builtin_tool(self, name: str) -> bool:
        return self._tool_manager.get_tool(name) is not None

    def read_only_tools(self) -> frozenset[str]:
        """The built-in tools marked ``readOnlyHint`` (the exposed workflows act: none)."""
        return frozenset(
            tool.name
            for tool in self._tool_manager.list_tools()
            if tool.annotations is not None and tool.annotations.read_only_hint
        )

    async def list_tools(self) -> list[MCPTool]:
        tools = await super().list_tools()
        if self.exposed is not None:
            tools.extend(await self.exposed.list())
        return tools

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Any = None
    ) -> CallToolResult | InputRequiredResult:
        if self.exposed is not None and not self.has_builtin_tool(name):
            return await self.exposed.call(name, arguments)
        return await super().call_tool(name, arguments, context)


def build_mcp_server(
    app: App,
    *,
    local: bool,
    public_url: str | None = None,
    progress_interval_s: float = 1.0,
    tenant: str = DEFAULT_TENANT,
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
        tenant=tenant,
    )
    auth: dict[str, Any] = {}
    if not local:
        base = (public_url or app.settings.url).rstrip("/")
        # Bearer tokens are mcpexec's own (``mcpexec token create``), not OAuth: no protected
        # resource metadata is published (it would have to name an authorization server, and
        # clients that read it start an OAuth flow that cannot succeed). ``issuer_url`` is
        # required by the SDK's settings and is not published anywhere.
        auth = {
            "token_verifier": AppTokenVerifier(app),
            "auth": AuthSettings(
                issuer_url=base,  # type: ignore[arg-type]  # pydantic coerces the URL
                resource_server_url=None,
                validate_token_resource=False,
            ),
        }
    tasks = TasksExtension(deps)
    with _sdk_logging_left_alone():
        server = McpexecServer(
            "mcpexec",
            title="mcpexec",
            instructions=INSTRUCTIONS,
            version=__version__,
            extensions=[tasks],
            subscriptions=bus,
            log_level="WARNING",
            **auth,
        )
    # The SDK's OpenTelemetryMiddleware makes a span per message through the *global* tracer
    # provider, which mcpexec never installs (its own traces, tracing.py, have their provider):
    # a no-op span, ~3 % of an MCP request's CPU in serve. Dropped, as the SDK documents.
    server.middleware[:] = [m for m in server.middleware if not isinstance(m, SdkOtelMiddleware)]
    server.watcher = watcher
    server.legacy_subscriptions = LegacySubscriptions(deps, bus)
    register_tools(server, deps)
    register_task_tools(server, deps)  # define_task, schedules (issue 11)
    register_workflow_tools(server, deps)  # workflows (issue 16)
    server.exposed = ExposedWorkflowTools(deps, server.has_builtin_tool)  # mcp_tool: (issue 16)
    register_gateway_tools(server, deps)  # list_tools, call_tool: only with a gateway (issue 14)
    register_resources(server, deps)
    server.legacy_subscriptions.register(server)
    tasks.check_arguments = lambda params: check_arguments(server, params)
    guard_listen(server)
    _no_prompts(server)
    return server


@contextmanager
def _sdk_logging_left_alone() -> Iterator[None]:
    """Build the server without the SDK's ``configure_logging``: ``MCPServer()`` (mcp 2.3) calls
    it to put a rich handler on the root logger, and importing rich is 0.1 s of every ``mcpexec
    mcp`` start, before ``initialize`` can be answered (issue 8: at most 1 s). Every entry point
    configures logging itself (stderr) first, which made the SDK's call a no-op anyway."""
    name = "configure_logging"  # a module attribute, not exported: no public switch in mcp 2.3
    configure = getattr(sdk_server, name)
    setattr(sdk_server, name, lambda *args, **kwargs: None)
    try:
        yield
    finally:
        setattr(sdk_server, name, configure)


def _no_prompts(server: MCPServer[Any]) -> None:
    """mcpexec has no prompts: the capability is not advertised and ``prompts/get`` is
    -32601. ``prompts/list`` still answers an empty list for clients (and the conformance
    suite) that call it without looking at the capabilities."""
    lowlevel = server._lowlevel_server  # the SDK derives capabilities from its handler table
    lowlevel._request_handlers.pop("prompts/get", None)
    derive = lowlevel.get_capabilities

    def get_capabilities(*args: Any, **kwargs: Any) -> Any:
        capabilities = derive(*args, **kwargs)
        capabilities.prompts = None
        return capabilities

    lowlevel.get_capabilities = get_capabilities  # type: ignore[method-assign]
