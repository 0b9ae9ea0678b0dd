"""The REST API: a FastAPI application over an ``App``."""

from __future__ import annotations

from fastapi import FastAPI

from mcpexec import __version__
from mcpexec.api.errors import install_error_handlers
from mcpexec.api.limits import BodyLimit
from mcpexec.api.routes import health, runs
from mcpexec.app import App


def create_api(app: App) -> FastAPI:
    """The REST API for ``app``. The caller owns the App's lifecycle (see ``mcpexec.asgi``)."""
    api = FastAPI(
        title="mcpexec",
        version=__version__,
        description="Durable, isolated runs for AI agents and operators.",
        # No OpenTelemetry here (metrics are Prometheus at /metrics): FastAPI's native telemetry
        # checked its providers and environment on every request, ~4% of serve's CPU.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    api.state.mcpexec = app
    install_error_handlers(api)
    api.include_router(health.router)
    api.include_router(runs.router)
    # Our own cap rather than FastAPI's max_body_size, whose 413 is not in our error format.
    api.add_middleware(BodyLimit, max_bytes=app.settings.max_body_bytes)
    return api
