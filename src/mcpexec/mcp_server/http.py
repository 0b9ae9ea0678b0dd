"""MCP over Streamable HTTP inside ``serve``: the app at ``/mcp`` and its security settings.

One endpoint serves both protocol eras (2025-11-25 sessions, 2026-07-28 stateless). Every
request needs one of the REST API's bearer tokens (401 otherwise). DNS-rebinding protection
(Host/Origin checks) is set from the bind address; ``MCPEXEC_MCP_ALLOWED_HOSTS`` adds host
names (e.g. a reverse proxy's), each allowed with any port and over http and https.
:class:`~mcpexec.mcp_server.guard.McpHttpGuard` trims header values, parses bearer tokens as
the REST API does, checks ``Mcp-Name`` on ``tasks/*`` and chooses a JSON answer for reads
(:mod:`~mcpexec.mcp_server.answers`).
"""

from __future__ import annotations

from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp

from mcpexec.app import App
from mcpexec.mcp_server.answers import choose_per_request
from mcpexec.mcp_server.guard import McpHttpGuard
from mcpexec.mcp_server.server import McpexecServer, build_mcp_server
from mcpexec.settings import Settings

LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
WILDCARD = ("0.0.0.0", "::", "")  # noqa: S104 - names of the wildcard bind, not a bind


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """Allowed Host and Origin values: loopback names when bound to loopback or a wildcard,
    the bind address itself otherwise, plus ``settings.mcp_allowed_hosts``."""
    bind = _bracket(settings.host)
    names: list[str] = []
    if bind in (*LOOPBACK, "[::1]") or settings.host in WILDCARD:
        names.extend(LOOPBACK)
    if settings.host not in WILDCARD and bind not in names:
        names.append(bind)
    names.extend(_bracket(h) for h in settings.mcp_allowed_hosts if h not in names)
    hosts = [pattern for name in names for pattern in (name, f"{name}:*")]
    origins = [
        pattern
        for name in names
        for scheme in ("http", "https")
        for pattern in (f"{scheme}://{name}", f"{scheme}://{name}:*")
    ]
    return TransportSecuritySettings(allowed_hosts=hosts, allowed_origins=origins)


def public_url(settings: Settings) -> str:
    host = settings.host if settings.host not in WILDCARD else "127.0.0.1"
    return f"http://{_bracket(host)}:{settings.port}"


def create_mcp_http(app: App, settings: Settings) -> tuple[McpexecServer, ASGIApp]:
    """The MCP server for ``serve`` and its ASGI app (route ``/mcp``). The caller mounts the app
    last at ``/`` and enters ``server.session_manager.run()`` in its lifespan."""
    server = build_mcp_server(app, local=False, public_url=public_url(settings))
    asgi = server.streamable_http_app(
        transport_security=transport_security(settings),
        host=settings.host,
        max_request_body_size=settings.max_body_bytes,
    )
    choose_per_request(server.session_manager)
    return server, McpHttpGuard(asgi, settings.max_body_bytes, server.read_only_tools())
