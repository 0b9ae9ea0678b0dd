"""The ASGI application ``mcpexec serve`` runs: REST, MCP and the App's background parts.

The App itself is assembled in :mod:`mcpexec.bootstrap`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import FrameType

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from mcpexec.api import create_api
from mcpexec.api.limits import BodyLimit
from mcpexec.app import App
from mcpexec.bootstrap import build_app
from mcpexec.dashboard import dashboard_routes
from mcpexec.mcp_server.http import create_mcp_http
from mcpexec.settings import Settings

log = logging.getLogger(__name__)


def create_server_app(
    settings: Settings, *, workers: int | None = None, spool: Path | None = None
) -> ServerApp:
    """The ASGI app of ``mcpexec serve``: REST API, MCP at ``/mcp``, in-process workers and
    reaper, and with ``spool`` a spool directory watched by this process."""
    app = build_app(settings, pidfd_watcher=True)
    slots = settings.workers if workers is None else workers
    mcp_server, mcp_asgi = create_mcp_http(app, settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await app.open()
        reloading = _reload_on_sighup(app)
        await app.ensure_admin_token(settings.token_path)
        await app.start_background(workers=slots, scheduler=True)
        # "ready" is logged by serving once the socket listens.
        try:
            # A mounted app's own lifespan never runs: the MCP session manager starts here.
            async with contextlib.AsyncExitStack() as stack:
                if spool is not None:
                    from mcpexec.spool.daemon import spool_running

                    # Stops (and lets jobs writing their result finish) before the App closes.
                    await stack.enter_async_context(spool_running(app, spool))
                await stack.enter_async_context(mcp_server.session_manager.run())
                yield
        finally:
            if reloading:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            await mcp_server.watcher.close()
            await app.close()

    api = create_api(app)
    api.router.lifespan_context = lifespan
    # The dashboard (issue 17): an adapter over the same App, at /ui.
    api.router.routes.extend(dashboard_routes(app))
    # Last, at "/": the MCP app's other paths (the OAuth metadata; /mcp itself is dispatched
    # before the REST API: ServerApp); mounted at /mcp it would answer with 307 redirects.
    api.mount("/", mcp_asgi)
    return ServerApp(api, mcp_asgi, settings.max_body_bytes)


class ServerApp:
    """serve's ASGI entry. ``/mcp`` goes straight to the MCP app, behind the same body cap,
    without the REST API's middleware stack and route matching (every MCP request was matched
    against each REST route first: a third of its CPU in serve); everything else, the
    lifespan included, to the REST API (``api``; ``state.mcpexec`` is the App)."""

    def __init__(self, api: FastAPI, mcp: ASGIApp, max_body_bytes: int) -> None:
        self.api = api
        self.state = api.state
        self._mcp = BodyLimit(mcp, max_bytes=max_body_bytes, read_first=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/mcp":
            await self._mcp(scope, receive, send)
        else:
            await self.api(scope, receive, send)


def _reload_on_sighup(app: App) -> bool:
    """SIGHUP re-reads the MCP servers file (``mcpexec servers reload`` without a token)."""
    if not app.tools.configured:
        return False
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, app.tools.reload_soon)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
        return False
    return True


class DrainingServer(uvicorn.Server):
    """uvicorn's server, telling the App the moment a shutdown signal arrives.

    uvicorn runs the lifespan's shutdown (``App.close``) only after its HTTP drain, and until
    then workers would keep claiming runs and long-polls would be cut off after the drain's
    timeout. ``handle_exit`` is the earliest point: from the signal handler it schedules
    ``App.begin_shutdown`` (stop claiming, end long-polls and followers with the current
    state), then lets uvicorn begin its own shutdown."""

    def __init__(self, config: uvicorn.Config, app: App) -> None:
        super().__init__(config)
        self._mcpexec = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._mcpexec.begin_shutdown_threadsafe()
        super().handle_exit(sig, frame)
