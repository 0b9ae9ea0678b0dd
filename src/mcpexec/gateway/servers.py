"""A downstream server's life: start, discover, restart with backoff, health.

:class:`DownstreamServer` supervises ``processes`` :class:`Connection` s of one configured
server in one task. A lost connection is replaced after a backoff (0.1 s doubling to 30 s,
reset after a minute of good health); its session is a new one (re-initialised), and the
server's tools stay in the catalog meanwhile (calls made while it restarts wait for it, up to
``startup_timeout_s``). Tools are re-listed after every (re)start and on ``list_changed``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import anyio.abc
import anyio.lowlevel
from mcp import types

from mcpexec.gateway.catalog import CatalogTool, allowed
from mcpexec.gateway.config import ServerConfig
from mcpexec.gateway.errors import DownstreamUnavailable, ServerLost
from mcpexec.gateway.sandbox import Confinement
from mcpexec.gateway.session import Connection, SpawnWrapper, first_of

State = Literal["stopped", "starting", "ready", "restarting", "failed", "disabled"]
_BACKOFF_START_S = 0.1
_BACKOFF_MAX_S = 30.0
_HEALTHY_S = 60.0  # a connection up this long resets the backoff


@dataclass(frozen=True)
class ServerHealth:
    name: str
    transport: str
    state: State
    pids: tuple[int, ...]
    restarts: int
    last_error: str | None
    tool_count: int
    started_at: float | None  # wall clock (epoch seconds) of the current connection
    in_flight: int
    #: stdio: under bubblewrap or not, and why (``"default"``: the gateway's default applied,
    #: ``"config"``: the server's own ``sandbox`` key); ``None`` for http.
    sandbox: bool | None = None
    sandbox_from: str | None = None
    network: bool | None = None
    #: The limits in force for the (first) process and how each is enforced.
    limits: dict[str, object] | None = None

    @property
    def pid(self) -> int | None:
        return self.pids[0] if self.pids else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "transport": self.transport,
            "state": self.state,
            "pid": self.pid,
            "pids": list(self.pids),
            "restarts": self.restarts,
            "last_error": self.last_error,
            "tool_count": self.tool_count,
            "started_at": self.started_at,
            "in_flight": self.in_flight,
            "sandbox": self.sandbox,
            "sandbox_from": self.sandbox_from,
            "network": self.network,
            "limits": self.limits,
        }


def _tool(server: str, tool: types.Tool) -> CatalogTool:
    annotations = (
        tool.annotations.model_dump(mode="json", by_alias=True, exclude_none=True)
        if tool.annotations
        else None
    )
    return CatalogTool(
        server=server,
        name=tool.name,
        description=tool.description or "",
        input_schema=tool.input_schema,
        output_schema=tool.output_schema,
        title=tool.title,
        annotations=annotations or None,
    )


class DownstreamServer:
    """One configured server; :meth:`run` is its supervisor task."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        on_catalog_changed: Callable[[], None],
        spawn_wrapper: SpawnWrapper | None,
        kill_grace_s: float,
        max_message_bytes: int,
        confinement: Confinement | None = None,
        sandbox_from: str | None = None,
    ) -> None:
        self.config = config
        self._confinement = confinement
        self._sandbox_from = sandbox_from
        self.state: State = "stopped" if config.enabled else "disabled"
        self.restarts = 0
        self.last_error: str | None = None
        self.started_at: float | None = None
        self.tools: tuple[CatalogTool, ...] = ()
        self.connections: list[Connection] = []
        self._ready = anyio.Event()  # set while at least one connection is ready
        self._changed = anyio.Event()  # list_changed seen
        self._attempt = anyio.Event()  # set (and replaced) after each failed connection
        self._stop = anyio.Event()
        self._done = anyio.Event()
        self._started = False
        self._on_catalog_changed = on_catalog_changed
        self._spawn_wrapper = spawn_wrapper
        self._kill_grace_s = kill_grace_s
        self._max_message_bytes = max_message_bytes
        self._next = 0

    # -- health ---------------------------------------------------------------------------------
    def health(self) -> ServerHealth:
        live = [c for c in self.connections if c.ready.is_set() and not c.lost.is_set()]
        state: State = "restarting" if self.state == "ready" and not live else self.state
        stdio = self.config.transport == "stdio"
        return ServerHealth(
            name=self.config.name,
            transport=self.config.transport,
            state=state,
            pids=tuple(c.pid for c in live if c.pid is not None),
            restarts=self.restarts,
            last_error=self.last_error,
            tool_count=len(self.tools),
            started_at=self.started_at,
            in_flight=sum(c.in_flight for c in self.connections),
            sandbox=bool(self.config.sandbox) if stdio else None,
            sandbox_from=self._sandbox_from if stdio else None,
            network=self.config.network if stdio else None,
            limits=next((c.limits for c in live if c.limits is not None), None),
        )

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, tg: anyio.abc.TaskGroup) -> None:
        """Start the supervisor (idempotent)."""
        if not self._started and self.config.enabled:
            self._started = True
            self.state = "starting"
            tg.start_soon(self.run)

    @property
    def started(self) -> bool:
        return self._started

    async def stop(self) -> None:
        """Stop every connection (kills its process group) and wait for the supervisor."""
        self._stop.set()
        for connection in self.connections:
            connection.stop()
        if self._started:
            await self._done.wait()
        self.state = "stopped" if self.config.enabled else "disabled"

    def _tools_changed(self) -> None:
        self._changed.set()

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                for slot in range(self.config.processes):
                    tg.start_soon(self._slot, slot)
                tg.start_soon(self._refresher)
                await self._stop.wait()
                tg.cancel_scope.cancel()
        finally:
            self._ready = anyio.Event()
            self._done.set()

    async def _slot(self, slot: int) -> None:
        backoff = _BACKOFF_START_S
        while not self._stop.is_set():
            connection = Connection(
                self.config,
                on_tools_changed=self._tools_changed,
                spawn_wrapper=self._spawn_wrapper,
                confinement=self._confinement,
                kill_grace_s=self._kill_grace_s,
                max_message_bytes=self._max_message_bytes,
            )
            self.connections.append(connection)
            up_since = time.monotonic()
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(connection.run)
                    await first_of(connection.ready, connection.lost)
                    if connection.ready.is_set() and not connection.lost.is_set():
                        await self._on_connected(connection, slot)
                    await connection.lost.wait()
                    self._lost_one()
            finally:
                with anyio.CancelScope(shield=True):
                    connection.stop()
                    await connection.closed.wait()
                    self.connections.remove(connection)
            if self._stop.is_set():
                return
            self.last_error = connection.error
            self._lost_one()
            if self.state != "ready":  # never up: failed (callers stop waiting), else restarting
                self.state = "restarting" if self.started_at is not None else "failed"
            self._attempt.set()
            self._attempt = anyio.Event()
            if time.monotonic() - up_since > _HEALTHY_S:
                backoff = _BACKOFF_START_S
            self.restarts += 1
            with anyio.move_on_after(backoff):
                await self._stop.wait()
            backoff = min(backoff * 2, _BACKOFF_MAX_S)

    def _lost_one(self) -> None:
        if not any(c.ready.is_set() and not c.lost.is_set() for c in self.connections):
            if self._ready.is_set():  # callers now wait for the restart (one new event)
                self._ready = anyio.Event()
            if self.state == "ready":
                self.state = "restarting"

    async def _on_connected(self, connection: Connection, slot: int) -> None:
        if slot == 0 or not self.tools:
            try:
                await self._discover(connection)
            except Exception as exc:
                connection.mark_lost(f"tools/list failed: {type(exc).__name__}: {exc}"[:300])
                return
        self.started_at = time.time()
        self.state = "ready"
        self._ready.set()

    async def _discover(self, connection: Connection) -> None:
        listed = await connection.list_tools()
        cfg = self.config
        tools = tuple(
            _tool(cfg.name, t) for t in listed if allowed(t.name, cfg.tools_allow, cfg.tools_deny)
        )
        if tools != self.tools:
            self.tools = tools
            self._on_catalog_changed()

    async def _refresher(self) -> None:
        while True:
            await self._changed.wait()
            self._changed = anyio.Event()
            connection = self._pick()
            if connection is not None:
                try:
                    await self._discover(connection)
                except Exception as exc:
                    self.last_error = f"tools/list after list_changed failed: {exc}"[:300]

    async def refresh(self) -> None:
        """Re-list the tools now (``notifications/tools/list_changed`` does this by itself)."""
        connection = await self.connection()
        await self._discover(connection)

    # -- calls ----------------------------------------------------------------------------------
    def _pick(self) -> Connection | None:
        live = [c for c in self.connections if c.ready.is_set() and not c.lost.is_set()]
        if not live:
            return None
        self._next += 1
        return min(live, key=lambda c: (c.in_flight, (self._next + id(c)) % len(live)))

    async def connection(self) -> Connection:
        """A ready connection (the least busy), waiting up to ``startup_timeout_s``."""
        if not self.config.enabled:
            raise DownstreamUnavailable(
                f"MCP server '{self.config.name}' is disabled", server=self.config.name
            )
        with anyio.move_on_after(self.config.startup_timeout_s):
            while True:
                found = self._pick()
                if found is not None:
                    return found
                if self._stop.is_set() or self.state == "failed":
                    break
                await first_of(self._ready, self._attempt)
                await anyio.lowlevel.checkpoint()
        error = f": {self.last_error}" if self.last_error else ""
        cls = ServerLost if self._stop.is_set() else DownstreamUnavailable
        raise cls(
            f"MCP server '{self.config.name}' is not available{error}", server=self.config.name
        )


def server_names(servers: Sequence[DownstreamServer]) -> list[str]:
    return [s.config.name for s in servers]
