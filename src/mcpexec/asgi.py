"""Assembling a server: the App from settings, and the ASGI application ``serve`` runs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from mcpexec.api import create_api
from mcpexec.app import App
from mcpexec.executor.sandbox import build_executor
from mcpexec.mcp_server.http import create_mcp_http
from mcpexec.settings import Settings
from mcpexec.store.blobs import FileBlobStore
from mcpexec.store.sqlite import SqliteStore

log = logging.getLogger(__name__)


def build_app(settings: Settings, *, pidfd_watcher: bool = False) -> App:
    """An App on the SQLite store and the executor ``settings.sandbox`` selects (bwrap sandbox by
    default; see :mod:`mcpexec.executor.sandbox`) under ``settings.home``."""
    settings.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = SqliteStore(settings.db_path)
    # pidfd_watcher: only for processes that run one event loop for life (serve, worker, mcp);
    # see mcpexec.executor.subprocess.use_pidfd_child_watcher.
    executor = build_executor(settings, pidfd_watcher=pidfd_watcher)
    return App(settings, store, executor, FileBlobStore(settings.artifacts_dir))


def create_server_app(settings: Settings, *, workers: int | None = None) -> FastAPI:
    """The ASGI app of ``mcpexec serve``: REST API, MCP at ``/mcp``, in-process workers and
    reaper."""
    app = build_app(settings, pidfd_watcher=True)
    slots = settings.workers if workers is None else workers
    mcp_server, mcp_asgi = create_mcp_http(app, settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await app.open()
        await app.ensure_admin_token(settings.token_path)
        await app.start_background(workers=slots)
        log.info(
            "mcpexec ready: %d worker slot(s), isolation=%s, home=%s",
            slots,
            app.isolation,
            settings.home,
        )
        try:
            # A mounted app's own lifespan never runs: the MCP session manager starts here.
            async with mcp_server.session_manager.run():
                yield
        finally:
            await mcp_server.watcher.close()
            await app.close()

    api = create_api(app)
    api.router.lifespan_context = lifespan
    # Last, at "/": its route is /mcp (mounted at /mcp it would answer with 307 redirects).
    api.mount("/", mcp_asgi)
    return api
