"""Who is calling: bearer tokens over HTTP (the REST API's tokens), the local operator over stdio.

Over HTTP the SDK's bearer middleware asks :class:`AppTokenVerifier` (backed by
``App.authenticate``) and answers 401 itself when a token is missing or unknown. A tool then
finds the caller with :func:`caller`. Over stdio there is no token: whoever can start the
process can already read ``$MCPEXEC_HOME``, so the caller is the local operator of the tenant
``mcpexec mcp --tenant`` names (role ``operator``: the same access rule as every other caller).
"""

from __future__ import annotations

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.shared.exceptions import MCPError

from mcpexec.app import App, Principal
from mcpexec.errors import McpexecError
from mcpexec.models import DEFAULT_TENANT

#: JSON-RPC error code for refused requests (no or bad token, role not allowed).
REFUSED = -32001


def local_operator(tenant: str = DEFAULT_TENANT) -> Principal:
    """Who a stdio (or in-memory) caller is: the operator of ``tenant``."""
    return Principal(
        token_id="local",  # noqa: S106 - an id, not a secret
        name=f"local operator (stdio, tenant {tenant})",
        role="operator",
        tenant=tenant,
    )


LOCAL_OPERATOR = local_operator()


class AppTokenVerifier:
    """``mcp.server.auth.provider.TokenVerifier`` over the App's tokens."""

    def __init__(self, app: App) -> None:
        self._app = app

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            principal = await self._app.authenticate(token)
        except McpexecError:
            return None
        return AccessToken(
            token=token,
            client_id=principal.token_id,
            scopes=[principal.role],
            subject=principal.token_id,
            claims={
                "name": principal.name,
                "role": principal.role,
                "tenant": principal.tenant,
                "principal": principal.id,
            },
        )


def caller(*, local: bool, tenant: str = DEFAULT_TENANT) -> Principal:
    """The principal of the current request. Raises a protocol error when there is none."""
    token = get_access_token()
    if token is not None and token.claims:
        claims = token.claims
        return Principal(
            token_id=token.client_id,
            name=str(claims.get("name", "")),
            role=str(claims.get("role", "")),
            tenant=str(claims.get("tenant", DEFAULT_TENANT)),
            principal_id=str(claims.get("principal", "")),
        )
    if local:
        return LOCAL_OPERATOR if tenant == DEFAULT_TENANT else local_operator(tenant)
    raise MCPError(code=REFUSED, message="a valid bearer token is required")
