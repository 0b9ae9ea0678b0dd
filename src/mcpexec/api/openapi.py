"""The OpenAPI document made true: bearer security, our error schema for every error status, and
"exactly one of command/shell/script" (generated clients depend on it)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "description": "stable, e.g. run_not_found"},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        }
    },
}

_REASONS = {
    400: "Malformed request",
    401: "No valid bearer token",
    403: "The token's role does not allow this",
    404: "No such run, artifact, task, schedule, tenant, token or workflow (or another tenant's)",
    405: "Method not allowed (see Allow)",
    409: "Conflict (e.g. idempotency_conflict: the key was used with another body)",
    413: "Request body too large",
    415: "Request body is not JSON",
    410: "The events after this id were pruned from the event log (events_expired)",
    416: "The Range header asks for bytes past the end (range_not_satisfiable)",
    422: "Invalid request; details.errors names each field",
    429: "Too many requests",
    502: "The MCP server failed the call: server_lost, or it refused the request (tool_error)",
    503: "The store failed, or (tools) pool_exhausted / server_unavailable",
    504: "The tool call timed out (timeout)",
}


#: Answers that are not JSON (FastAPI documents every 200 as application/json).
_MEDIA = {
    ("/api/v1/runs/{run_id}/logs", "get"): {
        "application/json": {"schema": {"type": "object"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "text/event-stream": {"schema": {"type": "string"}},
    },
    ("/api/v1/events", "get"): {
        # One SSE message: id (the event id), event (its type, or open/error/shutdown), data
        # (the event as JSON text).
        "text/event-stream": {
            "schema": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "event": {"type": "string"},
                    "data": {"type": "string"},
                    "retry": {"type": "string"},
                },
            }
        },
        "application/json": {"schema": {"type": "object"}},
    },
    ("/api/v1/runs/{run_id}/artifacts/{name}", "get"): {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
    },
}


_NAMES_A_TASK = ("/api/v1/runs", "/api/v1/schedules", "/api/v1/workflow-runs")
#: Operations that name a tenant (a body or query field): it may not exist, or the role may not
#: manage it (issue 10).
_NAMES_A_TENANT = ("/api/v1/tokens", "/api/v1/audit")


def _statuses(path: str, method: str) -> list[int]:
    """The error statuses an operation can answer, by its shape: every route can be refused
    (401), be invalid (400/422), rate-limited (429) or meet a failing store (503); a path with
    a parameter names something that may not exist (404); a write may be forbidden or conflict
    (403/409); a body may be too large or not JSON (413/415)."""
    codes = [400, 422, 429, 503]
    if path != "/health":
        codes.append(401)
    if "{" in path or (method == "post" and path in _NAMES_A_TASK):  # it may not exist
        codes.append(404)
    if method in ("post", "put", "patch", "delete"):
        codes += [403, 409]
    if method in ("post", "put", "patch") and (path.startswith("/api/") or path == "/execute"):
        codes += [413, 415]
    if path == "/api/v1/workers":
        codes.append(403)
    if path in _NAMES_A_TENANT:
        codes += [403, 404]
    if path == "/api/v1/tenants" and method == "get":
        codes.append(404)  # the caller's own tenant, when it was never created
    if path in _TOOL_LISTS:  # ?server= may name no server
        codes.append(404)
    if path in _TOOL_CALLS:  # the call itself: no such tool, the server died or timed out
        codes += [404, 502, 504]
    if path == "/api/v1/events":  # ?after= / Last-Event-ID older than the log's retention
        codes += [403, 410]
    if path == _ARTIFACT:  # a Range header past the end
        codes.append(416)
    return sorted(set(codes))


_ARTIFACT = "/api/v1/runs/{run_id}/artifacts/{name}"


_TOOL_LISTS = ("/api/v1/tools", "/tools")
_TOOL_CALLS = ("/api/v1/tools/{name}:call", "/execute")


def install_openapi(api: FastAPI) -> None:
    """Replace ``api.openapi`` with a generator that post-processes FastAPI's document."""

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is not None:
            return api.openapi_schema
        doc = get_openapi(
            title=api.title, version=api.version, description=api.description, routes=api.routes
        )
        components = doc.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        schemas["Error"] = ERROR_SCHEMA
        components["securitySchemes"] = {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "Authorization: Bearer TOKEN ($MCPEXEC_HOME/token after serve)",
            }
        }
        doc["security"] = [{"bearer": []}]
        for path, item in doc.get("paths", {}).items():
            for method, operation in item.items():
                if path == "/health":
                    operation["security"] = []
                responses = operation.setdefault("responses", {})
                media = _MEDIA.get((path, method))
                if media is not None:
                    ok = next(c for c in responses if c.startswith("2"))
                    responses[ok]["content"] = media
                for code in _statuses(path, method):
                    responses[str(code)] = {
                        "description": _REASONS[code],
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                        },
                    }
        api.openapi_schema = doc
        return doc

    api.openapi = openapi  # type: ignore[method-assign]
