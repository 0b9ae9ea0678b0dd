"""MCP resources: a run (``mcpexec://runs/{id}``) and its logs
(``mcpexec://runs/{id}/logs/{stream}``), with ``notifications/resources/updated`` to
``subscriptions/listen`` streams as output arrives and when the status changes."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import ResourceUpdated, SubscriptionBus

from mcpexec.app import App, Principal
from mcpexec.errors import McpexecError
from mcpexec.mcp_server.common import Deps, read_tail, tool_errors
from mcpexec.mcp_server.views import RunInfo
from mcpexec.models import Run, Stream

log = logging.getLogger(__name__)

#: Runs watched for update notifications at once (the oldest touches are not watched beyond it).
MAX_WATCHED = 256
WATCH_POLL_S = 0.5
LOG_RESOURCE_BYTES = 256 * 1024


def run_uri(run_id: str) -> str:
    return f"mcpexec://runs/{run_id}"


def log_uri(run_id: str, stream: Stream) -> str:
    return f"{run_uri(run_id)}/logs/{stream.value}"


def register_resources(server: MCPServer[Any], deps: Deps) -> None:
    app = deps.app

    @server.resource(
        "mcpexec://runs/{run_id}",
        name="run",
        description="A run: status, exit code, failure, progress and result (JSON).",
        mime_type="application/json",
    )
    async def run_resource(run_id: str) -> str:
        principal = deps.principal()
        with tool_errors():
            run = await app.get(run_id, principal)
        deps.on_run_touched(run, principal)
        return json.dumps(RunInfo.of(run).model_dump(mode="json"))

    @server.resource(
        "mcpexec://runs/{run_id}/logs/{stream}",
        name="run-logs",
        description="The last 256 KiB of a run's stdout or stderr.",
        mime_type="text/plain",
    )
    async def logs_resource(run_id: str, stream: str) -> str:
        principal = deps.principal()
        with tool_errors():
            run = await app.get(run_id, principal)
            text, _ = await read_tail(app, run_id, principal, Stream(stream), LOG_RESOURCE_BYTES)
        deps.on_run_touched(run, principal)
        return text


class RunWatcher:
    """Publishes resource updates for runs the MCP clients touched, until each is terminal."""

    def __init__(self, app: App, bus: SubscriptionBus) -> None:
        self._app = app
        self._bus = bus
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def touched(self, run: Run, principal: Principal) -> None:
        if run.terminal or run.id in self._tasks or len(self._tasks) >= MAX_WATCHED:
            return
        task = asyncio.get_running_loop().create_task(self._watch(run, principal))
        self._tasks[run.id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(run.id, None))

    async def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _watch(self, run: Run, principal: Principal) -> None:
        offsets = dict.fromkeys(Stream, 0)
        state = (run.status, run.progress, run.attempts)
        try:
            while True:
                run = await self._app.wait(run.id, principal, WATCH_POLL_S)
                for stream in Stream:
                    _, nxt, _ = await self._app.read_logs(
                        run.id, principal, stream, offsets[stream], 1 << 30
                    )
                    if nxt != offsets[stream]:
                        offsets[stream] = nxt
                        await self._bus.publish(ResourceUpdated(uri=log_uri(run.id, stream)))
                if (run.status, run.progress, run.attempts) != state:
                    state = (run.status, run.progress, run.attempts)
                    await self._bus.publish(ResourceUpdated(uri=run_uri(run.id)))
                if run.terminal:
                    return
        except McpexecError as exc:  # the run was purged, or the store failed: stop watching
            log.debug("stopped watching run %s: %s", run.id, exc)
