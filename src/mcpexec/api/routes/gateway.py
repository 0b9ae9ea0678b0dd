"""The gateway over REST: ``/api/v1/tools``, ``/api/v1/servers`` and seed 001's ``GET /tools``
and ``POST /execute`` (the same operations, in the seed's shapes).

A call that reached its tool answers 200 with ``status`` ``success`` or ``error`` (the tool said
``isError``, or ``fs`` refused the path); a call that could not be made answers with the error's
own status: ``unknown_tool`` 404, ``invalid_arguments`` 422, ``pool_exhausted`` and
``server_unavailable`` 503, ``server_lost`` 502, ``timeout`` 504.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StrictFloat

from mcpexec.api.deps import AppDep, PrincipalDep
from mcpexec.api.errors import SafeJSONResponse
from mcpexec.models import JsonObject, Text

router = APIRouter(tags=["tools"])

#: The longest a synchronous call may be told to wait (a durable run is the way past it).
MAX_CALL_TIMEOUT_S = 3600.0


class ToolCallBody(BaseModel):
    """``POST /api/v1/tools/{name}:call``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    arguments: JsonObject = Field(
        default_factory=dict, description="the tool's arguments (checked against inputSchema)"
    )
    timeout_s: StrictFloat | None = Field(
        default=None,
        gt=0,
        le=MAX_CALL_TIMEOUT_S,
        description="seconds without progress before the call fails with timeout "
        "(default: the server's timeout_s)",
    )


class ExecuteBody(ToolCallBody):
    """Seed 001's ``POST /execute``: ``tool_name`` (``server.tool`` or a unique bare name)."""

    tool_name: Text = Field(min_length=1, max_length=200)
    server: Text | None = Field(
        default=None, min_length=1, max_length=64, description="the server, for a bare name"
    )


def _servers_query() -> Any:
    return Query(min_length=1, max_length=64, description="only this server's tools")


@router.get("/api/v1/tools", summary="Every tool of the configured MCP servers (and fs)")
async def list_tools(
    app: AppDep,
    principal: PrincipalDep,
    server: Annotated[str | None, _servers_query()] = None,
) -> dict[str, Any]:
    tools = await app.tools.list_tools(principal, server)
    return {"tools": [t.to_dict() for t in tools], "collisions": app.tools.collisions()}


@router.post(
    "/api/v1/tools/{name}:call",
    summary="Call a tool and wait for its result (200 with status error when the tool failed)",
    response_model=dict[str, Any],
)
async def call_tool(
    name: str, body: ToolCallBody, app: AppDep, principal: PrincipalDep
) -> Response:
    outcome = await app.tools.call(principal, name, body.arguments, timeout_s=body.timeout_s)
    return SafeJSONResponse(outcome.to_dict())  # plain JSON already: no jsonable_encoder pass


@router.get("/api/v1/servers", summary="The configured MCP servers: state, pid, restarts, tools")
async def list_servers(app: AppDep, principal: PrincipalDep) -> dict[str, Any]:
    return app.tools.servers(principal)


@router.post(
    "/api/v1/servers:reload",
    summary="Re-read the servers file: add, remove, restart what changed (admin)",
)
async def reload_servers(app: AppDep, principal: PrincipalDep) -> dict[str, Any]:
    return await app.tools.reload(principal)


@router.get("/api/v1/servers/{name}", summary="One MCP server's health and tools")
async def get_server(name: str, app: AppDep, principal: PrincipalDep) -> dict[str, Any]:
    return app.tools.server(principal, name)


# -- seed 001's shapes ------------------------------------------------------------------------
@router.get("/tools", summary="Seed 001: the tools as {name, description, inputSchema}")
async def seed_tools(
    app: AppDep,
    principal: PrincipalDep,
    server: Annotated[str | None, _servers_query()] = None,
) -> dict[str, Any]:
    tools = await app.tools.list_tools(principal, server)
    return {
        "tools": [
            {"name": t.qualified, "description": t.description, "inputSchema": t.input_schema}
            for t in tools
        ]
    }


@router.post(
    "/execute", summary="Seed 001: call a tool synchronously", response_model=dict[str, Any]
)
async def execute(body: ExecuteBody, app: AppDep, principal: PrincipalDep) -> Response:
    outcome = await app.tools.call(
        principal, body.tool_name, body.arguments, server=body.server, timeout_s=body.timeout_s
    )
    return SafeJSONResponse(outcome.to_dict())  # plain JSON already: no jsonable_encoder pass
