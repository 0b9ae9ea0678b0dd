"""The gateway: configured downstream MCP servers plus the built-in ``fs``, as one catalog.

The Python API the App wires into REST, MCP, the CLI and the ``tool`` run kind::

    async with Gateway(load_config(path, secrets), sandbox_directory=box) as gateway:
        tools = await gateway.list_tools()                 # [CatalogTool] (starts lazy servers)
        result = await gateway.call_tool("everything.echo", {"message": "hi"},
                                         progress=on_progress, timeout_s=30)
        gateway.health()                                   # [ServerHealth]
        await gateway.reload(load_config(path, secrets))   # ConfigDiff

A call: resolve the name (``unknown_tool``), check the arguments against the tool's
``inputSchema`` (``invalid_arguments``), take a global slot and a server slot, each within
``acquire_timeout_s`` (``pool_exhausted``), get a ready session (``server_unavailable``),
call (``timeout``, ``server_lost``), cap the result; an ``isError`` result raises
:class:`ToolError` carrying the result.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import anyio.abc

from mcpexec.gateway.catalog import (
    Catalog,
    CatalogTool,
    Collision,
    ValidatorCache,
    allowed,
    validate_arguments,
)
from mcpexec.gateway.config import ConfigDiff, GatewayConfig, ServerConfig, diff_configs
from mcpexec.gateway.confined import ConfinedRoot, FsLimits
from mcpexec.gateway.errors import PoolExhausted, ToolError, UnknownTool
from mcpexec.gateway.fs_tools import FS_TOOLS, call_fs_tool_async
from mcpexec.gateway.results import ToolResult, capped, from_mcp
from mcpexec.gateway.sandbox import Confinement
from mcpexec.gateway.servers import DownstreamServer, ServerHealth
from mcpexec.gateway.session import ProgressCallback, SpawnWrapper

FS_SERVER = "fs"


class _Slots:
    """A counting limit with a bounded wait; ``pool_exhausted`` when no slot frees in time."""

    def __init__(self, size: int, what: str) -> None:
        self.size = size
        self._sem = anyio.Semaphore(size)
        self._what = what

    async def acquire(self, wait_s: float) -> None:
        try:  # a free slot: no cancel scope, no checkpoint (the common case, once per call)
            self._sem.acquire_nowait()
        except anyio.WouldBlock:
            pass
        else:
            return
        with anyio.move_on_after(wait_s):
            await self._sem.acquire()
            return
        raise PoolExhausted(
            f"{self._what}: all {self.size} slots busy for {wait_s:g} s", limit=self.size
        )

    def release(self) -> None:
        self._sem.release()

    @property
    def in_use(self) -> int:
        return self.size - self._sem.value


class Gateway:
    """Downstream MCP servers and ``fs``. Use as an async context manager (or start/close)."""

    def __init__(
        self,
        config: GatewayConfig | None = None,
        *,
        sandbox_directory: str | Path | None = None,
        fs_limits: FsLimits | None = None,
        spawn_wrapper: SpawnWrapper | None = None,
        confinement: Confinement | None = None,
        sandbox_default: bool = False,
        max_concurrent_executions: int = 10,
        acquire_timeout_s: float = 5.0,
        max_output_bytes: int = 1024 * 1024,
        max_message_bytes: int = 64 * 1024 * 1024,
        kill_grace_s: float = 2.0,
    ) -> None:
        self.config = config or GatewayConfig()
        self.max_output_bytes = max_output_bytes
        self.acquire_timeout_s = acquire_timeout_s
        self._spawn_wrapper = spawn_wrapper
        self._confinement = confinement
        self.sandbox_default = sandbox_default
        self._kill_grace_s = kill_grace_s
        self._max_message_bytes = max_message_bytes
        self._global = _Slots(max_concurrent_executions, "max_concurrent_executions")
        self._per_server: dict[str, _Slots] = {}
        self._servers: dict[str, DownstreamServer] = {}
        self._fs_root: ConfinedRoot | None = None
        self._sandbox_directory = sandbox_directory
        self._fs_limits = fs_limits
        self._tg: anyio.abc.TaskGroup | None = None
        self._catalog: Catalog | None = None
        self._lock = anyio.Lock()
        self._validators: ValidatorCache = {}

    # -- lifecycle ----------------------------------------------------------------------------
    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Open ``fs``'s root and start every ``eager`` server (lazy ones start at first use)."""
        if self._sandbox_directory is not None:
            self._fs_root = ConfinedRoot(self._sandbox_directory, limits=self._fs_limits)
        self._tg = await anyio.create_task_group().__aenter__()
        for server in self.config.servers.values():
            self._add(server)

    async def close(self) -> None:
        """Stop every server (their process groups die) and close ``fs``'s root."""
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as stopping:  # each waits its own grace
                for server in list(self._servers.values()):
                    stopping.start_soon(server.stop)
        if self._fs_root is not None:
            self._fs_root.close()
            self._fs_root = None
        # The task group was entered by start() in this same task (async with Gateway(...)).
        tg, self._tg = self._tg, None
        if tg is not None:
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)

    def _add(self, config: ServerConfig) -> None:
        sandbox_from = "config" if config.sandbox is not None else "default"
        if config.transport == "stdio" and config.sandbox is None:
            config = dataclasses.replace(config, sandbox=self.sandbox_default)
        server = DownstreamServer(
            config,
            on_catalog_changed=self._invalidate,
            confinement=self._confinement,
            sandbox_from=sandbox_from,
            spawn_wrapper=self._spawn_wrapper,
            kill_grace_s=self._kill_grace_s,
            max_message_bytes=self._max_message_bytes,
        )
        self._servers[config.name] = server
        self._per_server[config.name] = _Slots(config.max_concurrency, f"server '{config.name}'")
        if config.eager:
            server.start(self._require_tg())
        self._invalidate()

    def _require_tg(self) -> anyio.abc.TaskGroup:
        if self._tg is None:
            raise RuntimeError("Gateway is not started (use `async with Gateway(...)`)")
        return self._tg

    def _invalidate(self) -> None:
        self._catalog = None

    async def reload(self, config: GatewayConfig) -> ConfigDiff:
        """Apply a new config: add, remove, and restart what changed; unchanged servers (and
        their calls in flight) are not touched."""
        async with self._lock:
            diff = diff_configs(self.config, config)
            for name in (*diff.removed, *diff.changed):
                server = self._servers.pop(name)
                self._per_server.pop(name, None)
                await server.stop()
            for name in (*diff.added, *diff.changed):
                self._add(config.servers[name])
            self.config = config
            self._invalidate()
            return diff

    async def restart(self, name: str) -> None:
        """Stop the server and start it again (a new session, re-initialised)."""
        async with self._lock:
            server = self._server(name)
            await server.stop()
            self._add(self.config.servers.get(name, server.config))
            self._servers[name].start(self._require_tg())

    # -- discovery ----------------------------------------------------------------------------
    def _server(self, name: str) -> DownstreamServer:
        try:
            return self._servers[name]
        except KeyError:
            raise UnknownTool(f"No MCP server '{name}'", server=name) from None

    def _fs_tools(self) -> list[CatalogTool]:
        if self._fs_root is None:
            return []
        return [
            CatalogTool(
                FS_SERVER,
                t.name,
                t.description,
                t.input_schema,
                annotations={"readOnlyHint": t.read_only},
            )
            for t in FS_TOOLS
        ]

    def catalog(self) -> Catalog:
        """The tools known now (lazy servers not yet started contribute none)."""
        if self._catalog is None:
            tools = self._fs_tools()
            for server in self._servers.values():
                tools.extend(server.tools)
            self._catalog = Catalog(tools)
        return self._catalog

    async def list_tools(self, server: str | None = None) -> Sequence[CatalogTool]:
        """Every tool, starting lazy servers first (each waited for up to its startup timeout;
        a server that does not come up contributes none and shows in :meth:`health`)."""
        targets = [self._server(server)] if server and server != FS_SERVER else []
        if server is None:
            targets = [s for s in self._servers.values() if s.config.enabled]
        async with anyio.create_task_group() as tg:
            for target in targets:
                tg.start_soon(self._ensure_started, target)
        return self.catalog().tools(server)

    async def _ensure_started(self, server: DownstreamServer) -> None:
        server.start(self._require_tg())
        try:
            await server.connection()
        except Exception:
            return

    @property
    def collisions(self) -> tuple[Collision, ...]:
        return self.catalog().collisions

    def health(self) -> list[ServerHealth]:
        return [s.health() for s in self._servers.values()]

    def in_flight(self) -> int:
        return self._global.in_use

    # -- calls --------------------------------------------------------------------------------
    async def _resolve(self, name: str, server: str | None) -> CatalogTool:
        try:
            return self.catalog().resolve(name, server)
        except UnknownTool:
            pass
        # Maybe a lazy server not started yet: start what the name could belong to, retry.
        head = server or (name.split(".", 1)[0] if "." in name else None)
        if head is not None and head in self._servers:
            target = self._servers[head]
            target.start(self._require_tg())
            if not target.tools:
                # A connection is ready before its server's first tools/list has answered
                # (with several processes, another one may still be listing): list them now.
                await target.refresh()  # server_unavailable when it cannot start
        elif head is None:
            await self.list_tools()
        return self.catalog().resolve(name, server)

    async def call_tool(
        self,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        server: str | None = None,
        timeout_s: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> ToolResult:
        """Call a tool by ``server.tool`` (or a unique bare name, or ``server=``)."""
        tool = await self._resolve(name, server)
        args = dict(arguments or {})
        validate_arguments(tool, args, self._validators)
        await self._global.acquire(self.acquire_timeout_s)
        try:
            if tool.server == FS_SERVER:
                return await self._call_fs(tool, args)
            slots = self._per_server[tool.server]
            await slots.acquire(self.acquire_timeout_s)
            try:
                return await self._call_downstream(tool, args, timeout_s, progress)
            finally:
                slots.release()
        finally:
            self._global.release()

    async def _call_fs(self, tool: CatalogTool, args: dict[str, Any]) -> ToolResult:
        assert self._fs_root is not None
        started = time.perf_counter()
        output = await call_fs_tool_async(self._fs_root, tool.name, args)
        text = json.dumps(output, ensure_ascii=False)
        return capped(
            FS_SERVER,
            tool.name,
            [{"type": "text", "text": text}],
            output,
            False,
            self.max_output_bytes,
            (time.perf_counter() - started) * 1000,
        )

    async def _call_downstream(
        self,
        tool: CatalogTool,
        args: dict[str, Any],
        timeout_s: float | None,
        progress: ProgressCallback | None,
    ) -> ToolResult:
        server = self._servers[tool.server]
        if not allowed(tool.name, server.config.tools_allow, server.config.tools_deny):
            raise UnknownTool(f"No tool '{tool.qualified}'", tool=tool.qualified)
        server.start(self._require_tg())
        connection = await server.connection()
        started = time.perf_counter()
        raw = await connection.call(
            tool.name,
            args,
            timeout_s=timeout_s or server.config.timeout_s,
            max_total_s=max(server.config.max_total_s, timeout_s or 0),
            progress=progress,
        )
        result = from_mcp(
            tool.server,
            tool.name,
            raw,
            self.max_output_bytes,
            (time.perf_counter() - started) * 1000,
        )
        if result.is_error:
            raise ToolFailed(result)
        return result


class ToolFailed(ToolError):
    """The tool ran and reported an error (isError); ``result`` holds what it said."""

    def __init__(self, result: ToolResult) -> None:
        text = result.text()[:2000]
        super().__init__(
            f"{result.server}.{result.tool} reported an error: {text}",
            server=result.server,
            tool=result.tool,
            content=result.content,
        )
        self.result = result
