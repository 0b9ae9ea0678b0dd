"""The REST API: a FastAPI application over an ``App``."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from mcpexec import __version__
from mcpexec.api.errors import SafeJSONResponse, error_body, install_error_handlers
from mcpexec.api.limits import BodyLimit, JsonBody
from mcpexec.api.openapi import install_openapi
from mcpexec.api.routes import (
    alerts,
    events,
    gateway,
    health,
    runs,
    schedules,
    tasks,
    tenancy,
    workflows,
)
from mcpexec.app import App


def create_api(app: App) -> FastAPI:
    """The REST API for ``app``. The caller owns the App's lifecycle (see ``mcpexec.asgi``)."""
    api = FastAPI(
        title="mcpexec",
        version=__version__,
        description="Durable, isolated runs for AI agents and operators.",
        default_response_class=SafeJSONResponse,
        # No OpenTelemetry here (metrics are Prometheus at /metrics): FastAPI's native telemetry
        # checked its providers and environment on every request, ~4% of serve's CPU.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    api.state.mcpexec = app
    install_error_handlers(api)
    api.include_router(health.router)
    api.include_router(runs.router)
    api.include_router(tasks.router)
    api.include_router(schedules.router)
    api.include_router(tenancy.router)
    api.include_router(gateway.router)
    api.include_router(workflows.router)
    api.include_router(events.router)
    api.include_router(alerts.router)
    known = [*health.router.routes, *runs.router.routes, *tasks.router.routes]
    _install_fallback(
        api,
        [
            *known,
            *schedules.router.routes,
            *tenancy.router.routes,
            *gateway.router.routes,
            *workflows.router.routes,
            *events.router.routes,
            *alerts.router.routes,
        ],
    )
    install_openapi(api)
    # Our own cap rather than FastAPI's max_body_size, whose 413 is not in our error format.
    api.add_middleware(JsonBody)
    api.add_middleware(BodyLimit, max_bytes=app.settings.max_body_bytes)
    return api


class _Fallback:
    """JSON 404 for unknown API paths and 405 (with ``Allow``) for a known path with another
    method. Without it they would fall through to the MCP app mounted at ``/`` (plain text). An
    ASGI app rather than a function, so that Starlette routes every method (TRACE too) to it."""

    def __init__(self, known: list[BaseRoute]) -> None:
        self.known = [r for r in known if isinstance(r, APIRoute)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        allowed: set[str] = set()
        for route in self.known:
            if route.path_regex.match(path):
                allowed |= route.methods or set()
        if allowed and method not in allowed:
            allow = ", ".join(sorted(allowed))
            body = error_body("method_not_allowed", f"{method} is not allowed here")
            response = SafeJSONResponse(body, 405, headers={"Allow": allow})
        else:
            response = SafeJSONResponse(error_body("not_found", f"no such path: {path}"), 404)
        await response(scope, receive, send)


def _install_fallback(api: FastAPI, known: list[BaseRoute]) -> None:
    fallback = _Fallback(known)
    for path in ("/api/{rest:path}", "/health", "/metrics", "/tools", "/execute"):
        api.router.routes.append(Route(path, fallback))
