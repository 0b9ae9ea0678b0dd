"""``mcpexec mcp``: the MCP server over stdio on the same store as ``serve`` ($MCPEXEC_HOME).

stdout carries nothing but the protocol; logs go to stderr. The process runs its own workers
unless told not to (then a ``serve`` or ``worker`` on the same home executes the runs).
"""

from __future__ import annotations

import logging
import signal
import sys

import anyio

from mcpexec.asgi import build_app
from mcpexec.mcp_server.server import build_mcp_server
from mcpexec.settings import Settings

log = logging.getLogger(__name__)


def run_stdio(settings: Settings, *, workers: int, log_level: str = "warning") -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    anyio.run(_serve, settings, workers)


async def _serve(settings: Settings, workers: int) -> None:
    app = build_app(settings, pidfd_watcher=True)
    await app.open()
    server = build_mcp_server(app, local=True)
    try:
        await app.start_background(workers=workers, reaper=workers > 0)
        log.info("mcpexec mcp on stdio: %d worker slot(s), home=%s", workers, settings.home)
        async with anyio.create_task_group() as tg:

            async def stop_on_signal() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for _ in signals:
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(stop_on_signal)
            await server.run_stdio_async()  # returns when the client closes stdin
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await server.watcher.close()
            await app.close()
