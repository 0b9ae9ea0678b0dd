"""One live MCP session with a downstream server: a stdio process or a Streamable HTTP endpoint.

A :class:`Connection` lives in one task (:meth:`Connection.run`): it enters the SDK's
``Client`` (which multiplexes concurrent calls by JSON-RPC id), signals ``ready``, and stays
until it is stopped or ``lost``. Calls from any task go through :meth:`Connection.call`.

Lost means: the process exited, closed a pipe, flooded one message past the bound, or a call
saw the connection close. The dispatcher fails every pending request the moment its read
stream closes, so in-flight calls fail at once with ``server_lost`` — no wait for a timeout.
Restarting is the owner's job (:mod:`mcpexec.gateway.servers`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import Any

import anyio
import httpx2
from mcp import Client, MCPError, types
from mcp.client.streamable_http import streamable_http_client

from mcpexec.gateway.config import ServerConfig
from mcpexec.gateway.errors import (
    DownstreamUnavailable,
    InvalidArguments,
    ServerLost,
    ToolError,
    ToolTimeout,
    UnknownTool,
)
from mcpexec.gateway.sandbox import (
    Confinement,
    bwrap_path,
    sandboxed_argv,
    setpriv_path,
    unwritable,
)
from mcpexec.gateway.transport import ProcessInfo, stdio_transport

log = logging.getLogger(__name__)

#: ``progress, total, message`` — relayed from the server's ``notifications/progress``.
ProgressCallback = Callable[[float, float | None, str | None], Awaitable[None]]
#: The domain's sandbox: gets the server's argv, returns the argv to run (e.g. under bwrap).
SpawnWrapper = Callable[[Sequence[str]], list[str]]

_MAX_PAGES = 100  # a paginator that never ends cannot hang discovery
_SAFE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TERM")


def server_environment(config: ServerConfig) -> dict[str, str]:
    """A stdio server's environment: a few harmless variables of ours plus its own ``env``
    (mcpexec's environment, its tokens and settings, never reach a downstream server)."""
    base = {k: v for k in _SAFE_ENV if (v := os.environ.get(k)) is not None}
    return base | dict(config.env)


class Connection:
    """One MCP session (one process, for stdio). Not restartable: make a new one."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        on_tools_changed: Callable[[], None],
        spawn_wrapper: SpawnWrapper | None = None,
        confinement: Confinement | None = None,
        kill_grace_s: float = 2.0,
        max_message_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.config = config
        self._confinement = confinement
        #: The limits in force for this connection's process (from the confinement).
        self.limits: dict[str, object] | None = None
        self.info = ProcessInfo()
        self.ready = anyio.Event()
        self.lost = anyio.Event()
        self.closed = anyio.Event()
        self.error: str | None = None
        self.in_flight = 0
        self._client: Client | None = None
        self._stop = anyio.Event()
        self._on_tools_changed = on_tools_changed
        self._spawn_wrapper = spawn_wrapper
        self._kill_grace_s = kill_grace_s
        self._max_message_bytes = max_message_bytes

    @property
    def pid(self) -> int | None:
        return self.info.pid if self.config.transport == "stdio" else None

    def stop(self) -> None:
        self._stop.set()

    def mark_lost(self, reason: str) -> None:
        if self.error is None:
            self.error = reason
        self.lost.set()

    def _transport(self, stack: AsyncExitStack) -> Any:
        config = self.config
        if config.transport == "http":
            assert config.url is not None
            http = httpx2.AsyncClient(
                headers=dict(config.headers), timeout=httpx2.Timeout(30.0, read=300.0)
            )
            stack.push_async_callback(http.aclose)
            return streamable_http_client(config.url, http_client=http)
        assert config.command is not None
        argv = [config.command, *config.args]
        pass_fds: tuple[int, ...] = ()
        if self._spawn_wrapper is not None:
            argv = self._spawn_wrapper(argv)
        if config.sandbox:
            bwrap = bwrap_path()
            if bwrap is None:
                raise DownstreamUnavailable(
                    f"MCP server '{config.name}' asks for the sandbox, but bwrap is not installed",
                    server=config.name,
                )
            drop_to = self._confinement.drop_to() if self._confinement is not None else None
            setpriv = setpriv_path() if drop_to is not None else None
            if drop_to is not None:
                if setpriv is None:
                    raise DownstreamUnavailable(
                        f"MCP server '{config.name}' cannot drop to the sandbox user: setpriv "
                        "(util-linux) is not installed under /usr",
                        server=config.name,
                    )
                for path in unwritable(config.writable, *drop_to):
                    log.warning(
                        "MCP server %r: its writable %s is not writable by the sandbox user "
                        "%d:%d it runs as (chown -R %d:%d %s)",
                        config.name, path, *drop_to, *drop_to, path,
                    )  # fmt: skip
            seccomp = self._confinement.seccomp_fd() if self._confinement is not None else None
            if seccomp is not None:
                # Open for the connection's life (one fd per server process, close-on-exec
                # except in the spawned child): closed once, here, never by the transport.
                stack.callback(_close_fd, seccomp)
                pass_fds = (seccomp,)
            argv = sandboxed_argv(
                config, argv, bwrap, seccomp_fd=seccomp, drop_to=drop_to, setpriv=setpriv
            )
        if self._confinement is not None:
            confined = self._confinement.confine(config, argv)

            async def release() -> None:  # after the transport closed the group (LIFO)
                with anyio.CancelScope(shield=True):  # also when the connection is cancelled
                    await anyio.to_thread.run_sync(confined.release)  # waits for the rmdir

            stack.push_async_callback(release)
            argv, self.limits = list(confined.argv), dict(confined.limits)
        return stdio_transport(
            argv,
            server_environment(config),
            config.cwd,
            self.info,
            max_message_bytes=self._max_message_bytes,
            kill_grace_s=self._kill_grace_s,
            pass_fds=pass_fds,
        )

    async def _on_message(self, message: Any) -> None:
        # Called inline by the session's read loop: never await the session from here.
        if isinstance(message, types.ToolListChangedNotification):
            self._on_tools_changed()

    async def _listen(self, client: Client) -> None:
        """2026-07-28 servers push list changes on a ``subscriptions/listen`` stream only."""
        try:
            async with client.listen(tools_list_changed=True) as subscription:
                async for _event in subscription:
                    self._on_tools_changed()
        except Exception:
            return

    async def _watch_process(self) -> None:
        await self.info.exited.wait()
        self.mark_lost(self._process_reason())

    def _process_reason(self) -> str:
        reason = self.info.lost_reason or f"exited with status {self.info.returncode}"
        tail = self.info.stderr_tail.decode("utf-8", "replace").strip().splitlines()
        return f"{reason}: {tail[-1][:300]}" if tail else reason

    async def run(self) -> None:
        """Connect, then hold the session until :meth:`stop` or loss; never raises."""
        try:
            async with anyio.create_task_group() as outer:
                outer.start_soon(self._startup_watchdog, outer.cancel_scope)
                async with AsyncExitStack() as stack:
                    client = Client(
                        self._transport(stack), cache=None, message_handler=self._on_message
                    )
                    await stack.enter_async_context(client)
                    self._client = client
                    if self.config.transport == "stdio":
                        outer.start_soon(self._watch_process)
                    tools = client.server_capabilities.tools
                    if tools is not None and tools.list_changed:
                        outer.start_soon(self._listen, client)
                    self.ready.set()
                    await first_of(self._stop, self.lost)
                    self._client = None
                outer.cancel_scope.cancel()
        except Exception as exc:
            leaf = _leaf(exc)
            reason = self._process_reason() if self.info.exited.is_set() else None
            self.mark_lost(reason or f"failed to start: {type(leaf).__name__}: {leaf}"[:500])
        finally:
            self._client = None
            self.lost.set()
            self.closed.set()

    async def _startup_watchdog(self, scope: anyio.CancelScope) -> None:
        with anyio.move_on_after(self.config.startup_timeout_s):
            await first_of(self.ready, self._stop, self.lost)
        if not self.ready.is_set():
            if not self._stop.is_set():
                self.mark_lost(f"did not start within {self.config.startup_timeout_s:g} s")
            scope.cancel()

    async def list_tools(self) -> list[types.Tool]:
        """Every tool, following ``nextCursor`` (at most 100 pages)."""
        client = self._require_client()
        found: list[types.Tool] = []
        cursor: str | None = None
        with anyio.fail_after(self.config.startup_timeout_s):
            for _ in range(_MAX_PAGES):
                try:
                    page = await client.list_tools(cursor=cursor, cache_mode="bypass")
                except MCPError as exc:
                    raise self._lost_or(exc) from None
                found.extend(page.tools)
                cursor = page.next_cursor
                if not cursor:
                    break
        return found

    def _require_client(self) -> Client:
        if self.lost.is_set():
            raise ServerLost(
                f"MCP server '{self.config.name}' is gone: {self.error}", server=self.config.name
            )
        if self._client is None:
            raise DownstreamUnavailable(
                f"MCP server '{self.config.name}' is not connected", server=self.config.name
            )
        return self._client

    def _lost_or(self, exc: MCPError) -> Exception:
        name = self.config.name
        if exc.code == types.CONNECTION_CLOSED:
            if self.config.transport == "stdio" and not self.info.exited.is_set():
                reason = self.info.lost_reason or "closed the connection"
            else:
                reason = self._process_reason() if self.info.pid else "closed the connection"
            self.mark_lost(reason)
            return ServerLost(
                f"MCP server '{name}' was lost during the call: {reason}", server=name
            )
        if exc.code == types.INVALID_PARAMS:
            return InvalidArguments(f"{name}: {exc.message}", server=name, field="arguments")
        if exc.code == types.METHOD_NOT_FOUND:
            return UnknownTool(f"{name}: {exc.message}", server=name)
        return ToolError(
            f"MCP server '{name}' refused the call: {exc.message}", server=name, rpc_code=exc.code
        )

    async def call(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        *,
        timeout_s: float,
        max_total_s: float,
        progress: ProgressCallback | None = None,
    ) -> types.CallToolResult:
        """``tools/call``. The timeout restarts on each progress notification, but the call
        never outlives ``max_total_s``. Cancelling the calling task (or a timeout) sends
        ``notifications/cancelled`` downstream (the SDK's dispatcher does)."""
        client = self._require_client()
        relay = progress
        start = anyio.current_time()
        total_deadline = start + max_total_s if max_total_s > 0 else math.inf
        scope = anyio.CancelScope(deadline=min(start + timeout_s, total_deadline))

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            scope.deadline = min(anyio.current_time() + timeout_s, total_deadline)
            if relay is not None:
                await relay(progress, total, message)

        self.in_flight += 1
        try:
            with scope:
                return await client.call_tool(tool, dict(arguments), progress_callback=on_progress)
            elapsed = anyio.current_time() - start
            raise ToolTimeout(
                f"{self.config.name}.{tool} did not finish within {elapsed:.1f} s "
                f"(timeout {timeout_s:g} s without progress, at most {max_total_s:g} s)",
                server=self.config.name,
                tool=tool,
                timeout_s=timeout_s,
            )
        except MCPError as exc:
            raise self._lost_or(exc) from None
        except RuntimeError as exc:  # the SDK's output-schema check of the result
            raise ToolError(
                f"{self.config.name}.{tool}: {exc}"[:500], server=self.config.name, tool=tool
            ) from None
        except (httpx2.HTTPError, OSError, anyio.BrokenResourceError) as exc:
            self.mark_lost(f"{type(exc).__name__}: {exc}"[:300])
            raise ServerLost(
                f"MCP server '{self.config.name}' was lost during the call: {self.error}",
                server=self.config.name,
            ) from None
        finally:
            self.in_flight -= 1


def _leaf(exc: BaseException) -> BaseException:
    """The one failure inside nested task-group exception groups (what to tell the operator)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


async def first_of(*events: anyio.Event) -> None:
    """Return when any of ``events`` is set."""
    async with anyio.create_task_group() as tg:

        async def wait(event: anyio.Event) -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        for event in events:
            tg.start_soon(wait, event)


def _close_fd(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
