"""``mcpexec mcp``: the MCP server over stdio on the same store as ``serve`` ($MCPEXEC_HOME).

stdout carries nothing but the protocol; logs go to stderr. Who executes the runs:

- a ``serve`` on the same home, when one is running (its URL is in ``$MCPEXEC_HOME/url`` and
  its ``/health`` answers with worker slots): this process then runs no workers and the runs
  live as long as that ``serve``, whatever the MCP client does;
- otherwise this process's own workers (``--workers``, or none with ``--no-worker``).

When the client goes away (stdin closes), or on SIGTERM/SIGINT, the server shuts down as
``serve`` does: it stops claiming, lets running attempts finish within ``shutdown_grace_s``,
then interrupts the rest and requeues them. Signals that arrive meanwhile (the Python SDK's
client sends SIGTERM 2 s after closing stdin) do not cut the drain short; a SIGKILL does
(the same client sends it 2 s later), and the runs it interrupts are retried at the next
start (``worker_lost``).

Imports are lazy: an MCP client starts this process for every session and waits for its
``initialize`` answer, so the store and the executor load only after the protocol is up.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import sys
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from mcpexec.settings import Settings

log = logging.getLogger(__name__)

#: How long ``mcpexec mcp`` waits for a ``serve``'s ``/health`` before running its own workers.
HEALTH_TIMEOUT_S = 1.0


def run_stdio(
    settings: Settings, *, workers: int, log_level: str = "warning", tenant: str = "default"
) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    anyio.run(_serve, settings, workers, tenant)


def served_url(home: Path) -> str | None:
    """The URL of a healthy ``serve`` with workers on ``home``, or None."""
    try:
        url = (home / "url").read_text().strip().rstrip("/")
    except OSError:
        return None
    if not url.startswith(("http://", "https://")):
        return None
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=HEALTH_TIMEOUT_S) as response:  # noqa: S310 - http(s) checked above
            health: Any = json.loads(response.read())
    except (OSError, ValueError):
        return None
    if not isinstance(health, dict) or health.get("status") != "ok":
        return None
    return url if int(health.get("worker_slots") or 0) > 0 else None


async def _serve(settings: Settings, workers: int, tenant: str) -> None:
    # Imported here, not at the top: the store and executor load after the protocol is up.
    from mcpexec.bootstrap import build_app
    from mcpexec.mcp_server.server import build_mcp_server

    app = build_app(settings, pidfd_watcher=True)
    await app.open()
    server = build_mcp_server(app, local=True, tenant=tenant)

    async def start_workers() -> None:
        # Beside the protocol, not before it: the client waits for ``initialize`` (issue 8: at
        # most 1 s), and the executor's start (the sandbox probe, the spawn helper) and the
        # look for a ``serve`` take a fifth of that. A run submitted meanwhile waits queued.
        slots = workers
        if slots > 0:
            url = await anyio.to_thread.run_sync(served_url, settings.home)
            if url is not None:
                log.info("mcpexec mcp: runs go to the serve at %s (no workers here)", url)
                slots = 0
        # Shielded: a session that ends while the executor starts must not leave it half
        # started (app.close stops only what start_background finished).
        with anyio.CancelScope(shield=True):
            await app.start_background(workers=slots, reaper=slots > 0)
        log.info("mcpexec mcp on stdio: %d worker slot(s), home=%s", slots, settings.home)

    # Held until the drain ends: a signal during the drain is absorbed, not fatal.
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        try:
            async with anyio.create_task_group() as tg:

                async def stop_on_signal() -> None:
                    async for _ in signals:
                        tg.cancel_scope.cancel()
                        return

                tg.start_soon(stop_on_signal)
                tg.start_soon(start_workers)
                await server.run_stdio_async()  # returns when the client closes stdin
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                log.info("mcpexec mcp: session over; draining running attempts")
                await server.watcher.close()
                await app.close()


def client_config(home: Path) -> str:
    """The ``mcpServers`` JSON that Claude Desktop, Claude Code (``.mcp.json``), Cursor and
    the Inspector (``--config``) read, with the absolute path of this ``mcpexec``: clients
    start servers without the shell's PATH (a bare ``mcpexec`` fails with ENOENT)."""
    beside = Path(sys.executable).parent / "mcpexec"  # the entry point of this interpreter
    exe = beside if beside.exists() else Path(shutil.which("mcpexec") or sys.argv[0])
    entry = {
        "command": str(exe.absolute()),
        "args": ["mcp"],
        "env": {"MCPEXEC_HOME": str(home.absolute())},
    }
    return json.dumps({"mcpServers": {"mcpexec": entry}}, indent=2)
