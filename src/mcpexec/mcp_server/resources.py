"""MCP resources: a run (``mcpexec://runs/{id}``) and its logs
(``mcpexec://runs/{id}/logs/{stream}``), with ``notifications/resources/updated`` as output
arrives and when the status changes: on ``subscriptions/listen`` streams (2026-07-28) and to
sessions that sent ``resources/subscribe`` (2025-11-25)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from typing import Any

from mcp import types as mt
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import ResourceUpdated, ServerEvent, SubscriptionBus
from mcp.shared.exceptions import MCPError

from mcpexec.app import App, Principal
from mcpexec.errors import Forbidden, McpexecError, Unauthorized
from mcpexec.mcp_server.auth import REFUSED
from mcpexec.mcp_server.common import Deps, read_tail, resource_errors
from mcpexec.mcp_server.views import RunInfo
from mcpexec.models import Run, Stream

log = logging.getLogger(__name__)

#: Runs watched for update notifications at once (the oldest touches are not watched beyond it).
MAX_WATCHED = 256
WATCH_POLL_S = 0.5
LOG_RESOURCE_BYTES = 256 * 1024
#: Resource URIs one 2025-11-25 session may be subscribed to at once.
MAX_SUBSCRIPTIONS_PER_SESSION = 64

_RESOURCE_URI = re.compile(r"mcpexec://runs/(?P<run_id>[^/]+)(?:/logs/(?P<stream>[^/]+))?")


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
        with resource_errors(run_uri(run_id)):
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
        uri = f"{run_uri(run_id)}/logs/{stream}"
        _run_id_of(uri)  # an unknown stream is the caller's mistake (-32602), like a bad URI
        with resource_errors(uri):
            run = await app.get(run_id, principal)
            text, _ = await read_tail(app, run_id, principal, Stream(stream), LOG_RESOURCE_BYTES)
        deps.on_run_touched(run, principal)
        return text

    @server.resource(
        "mcpexec://secrets",
        name="secrets",
        description="The secret names a run may expose as env variables (spec field secrets).",
        mime_type="application/json",
    )
    async def secrets_resource() -> str:
        deps.principal()  # callers only; the values are never shown
        return json.dumps({"secrets": sorted(app.settings.secrets)})


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
                if self._app.shutting_down:
                    return  # wait no longer waits; the watcher is closed next
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


class LegacySubscriptions:
    """``resources/subscribe`` and ``resources/unsubscribe`` for 2025-11-25 sessions (stdio and
    Streamable HTTP): a subscribed URI's updates, as the :class:`RunWatcher` publishes them on
    the bus, go to that session as ``notifications/resources/updated``.

    Per session: at most :data:`MAX_SUBSCRIPTIONS_PER_SESSION` URIs, one bus listener and one
    sender task, created at the first subscribe and removed when the session ends. Updates
    pending for a URI are coalesced, so a session that reads slowly holds at most one per URI.
    The runs themselves are watched by the shared :class:`RunWatcher` (bounded by
    :data:`MAX_WATCHED`, each until the run is terminal)."""

    def __init__(self, deps: Deps, bus: SubscriptionBus) -> None:
        self._deps = deps
        self._bus = bus
        self._sessions: dict[int, _SessionSubscriptions] = {}

    @property
    def active_sessions(self) -> int:
        """Sessions with a listener and a sender task (those that subscribed and are open)."""
        return len(self._sessions)

    def register(self, server: MCPServer[Any]) -> None:
        """Serve both methods on ``server``; the SDK then advertises ``resources.subscribe`` to
        2025-11-25 clients (the 2026-07-28 method table has neither method)."""
        # MCPServer has no public way to add a spec method's handler; its low-level Server does.
        lowlevel = server._lowlevel_server
        lowlevel.add_request_handler(
            "resources/subscribe", mt.SubscribeRequestParams, self.subscribe
        )
        lowlevel.add_request_handler(
            "resources/unsubscribe", mt.UnsubscribeRequestParams, self.unsubscribe
        )

    async def subscribe(
        self, ctx: ServerRequestContext[Any], params: mt.SubscribeRequestParams
    ) -> mt.EmptyResult:
        uri = str(params.uri)
        run_id = _run_id_of(uri)
        principal = self._deps.principal()
        try:
            run = await self._deps.app.get(run_id, principal)
        except (Unauthorized, Forbidden) as exc:
            raise MCPError(code=REFUSED, message=exc.message, data={"code": exc.code}) from exc
        except McpexecError as exc:
            raise MCPError(
                code=mt.INVALID_PARAMS, message=f"{exc.message} ({exc.code})", data={"uri": uri}
            ) from exc
        session = self._session(_connection_of(ctx))
        if uri not in session.uris and len(session.uris) >= MAX_SUBSCRIPTIONS_PER_SESSION:
            raise MCPError(
                code=mt.INVALID_PARAMS,
                message=f"at most {MAX_SUBSCRIPTIONS_PER_SESSION} subscriptions per session",
                data={"uri": uri},
            )
        session.uris.add(uri)
        self._deps.on_run_touched(run, principal)
        return mt.EmptyResult()

    async def unsubscribe(
        self, ctx: ServerRequestContext[Any], params: mt.UnsubscribeRequestParams
    ) -> mt.EmptyResult:
        session = self._sessions.get(id(_connection_of(ctx)))
        if session is not None:
            session.uris.discard(str(params.uri))
        return mt.EmptyResult()

    def _session(self, connection: Connection) -> _SessionSubscriptions:
        key = id(connection)
        session = self._sessions.get(key)
        if session is None:
            session = _SessionSubscriptions(connection, self._bus)
            self._sessions[key] = session

            async def forget() -> None:
                self._sessions.pop(key, None)
                await session.close()

            connection.exit_stack.push_async_callback(forget)
        return session


class _SessionSubscriptions:
    """One session's subscribed URIs, its bus listener and the task that notifies it."""

    def __init__(self, connection: Connection, bus: SubscriptionBus) -> None:
        self.uris: set[str] = set()
        self._pending: dict[str, None] = {}  # an ordered set
        self._wake = asyncio.Event()
        self._unlisten = bus.subscribe(self._on_event)
        self._task = asyncio.get_running_loop().create_task(self._send(connection))

    def _on_event(self, event: ServerEvent) -> None:
        if isinstance(event, ResourceUpdated) and event.uri in self.uris:
            self._pending[event.uri] = None
            self._wake.set()

    async def _send(self, connection: Connection) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                uri = next(iter(self._pending))
                del self._pending[uri]
                if uri in self.uris:  # not unsubscribed meanwhile
                    await connection.send_resource_updated(uri)  # best effort, never raises

    async def close(self) -> None:
        self._unlisten()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def _run_id_of(uri: str) -> str:
    match = _RESOURCE_URI.fullmatch(uri)
    stream = match and match["stream"]
    if match is None or (stream is not None and stream not in {s.value for s in Stream}):
        raise MCPError(
            code=mt.INVALID_PARAMS,
            message=f"unknown resource {uri!r}: mcpexec serves mcpexec://runs/{{run_id}} "
            "and mcpexec://runs/{run_id}/logs/{stdout|stderr}",
            data={"uri": uri},
        )
    return match["run_id"]


def _connection_of(ctx: ServerRequestContext[Any]) -> Connection:
    # The per-request ServerSession holds the connection (identity, teardown stack) without a
    # public accessor in mcp 2.3; tests/mcp_server cover this in both transports.
    connection: Connection = ctx.session._connection
    return connection
