"""Tools of downstream MCP servers (and the built-in ``fs``) as App operations: ``app.tools``.

The domain side of the gateway plug-in (:mod:`mcpexec.gateway`): it reads the operator's
``mcp_servers.json`` (``Settings.mcp_config``) with the server's secrets, owns the
:class:`~mcpexec.gateway.Gateway` for the App's life, checks the caller's role, and reloads the
configuration on request (``servers:reload``, SIGHUP). REST, MCP and the CLI call these
methods, so a tool behaves the same through each.

The Gateway lives in one task of its own (its task group must be entered and left in one task),
started by ``App.open`` when the settings configure a gateway and stopped by ``App.close``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcpexec.errors import ConfigError, Forbidden, McpexecError
from mcpexec.executor.base import ExecRequest, ExecResult, ExecSink, Executor
from mcpexec.executor.sandbox import load_secrets
from mcpexec.gateway import (
    FS_SERVER,
    CatalogTool,
    ConfigDiff,
    ConfigProblem,
    Gateway,
    GatewayConfig,
    ProgressCallback,
    ToolFailed,
    ToolResult,
    load_config,
    validate_arguments,
)
from mcpexec.gateway.errors import (
    DownstreamUnavailable,
    FsError,
    InvalidArguments,
    PoolExhausted,
    ServerLost,
    ToolTimeout,
    UnknownTool,
)
from mcpexec.metrics import Metrics
from mcpexec.models import Failure, FailureKind, Progress, Stream, ToolCall
from mcpexec.server_confinement import ServerConfinement
from mcpexec.settings import Settings
from mcpexec.tenancy import Action, Decision, decide

if TYPE_CHECKING:
    from mcpexec.app import Principal

__all__ = ["CallOutcome", "ToolRunExecutor", "ToolsService"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallOutcome:
    """A call that reached its tool: ``result`` when it answered (also with ``isError``), or the
    tool's own refusal (``error``, e.g. ``fs``'s ``path_outside_sandbox``)."""

    tool: str
    status: str  # "success" | "error"
    execution_time_ms: float
    result: ToolResult | None = None
    error: McpexecError | None = None

    def to_dict(self) -> dict[str, Any]:
        """Seed 001's ``/execute`` answer plus the MCP result (content blocks, structured)."""
        body: dict[str, Any] = {
            "status": self.status,
            "tool": self.tool,
            "execution_time_ms": round(self.execution_time_ms, 3),
        }
        if self.result is not None:
            body["output"] = self.result.output()
            body["content"] = self.result.content
            body["structuredContent"] = self.result.structured
            body["isError"] = self.result.is_error
            body["truncated"] = self.result.truncated
        if self.error is not None:
            body["error"] = {
                "code": self.error.code,
                "message": str(self.error),
                "details": {k: v for k, v in self.error.details.items() if k != "content"},
            }
        elif self.status == "error" and self.result is not None:
            body["error"] = {"code": "tool_error", "message": self.result.text()[:2000]}
        return body


class ToolsService:
    """``app.tools``: discovery, calls, server health and reloads."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._gateway: Gateway | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._problems: tuple[ConfigProblem, ...] = ()
        self._load_error: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reload_lock: asyncio.Lock | None = None

    @property
    def configured(self) -> bool:
        """Whether this process offers tools (a servers file or a sandbox directory is set)."""
        return self.settings.gateway_configured

    # -- lifecycle ----------------------------------------------------------------------------
    def _load(self) -> GatewayConfig:
        """The servers file now; a file that cannot be read leaves no servers (and says why)."""
        path = self.settings.mcp_config
        if path is None:
            return GatewayConfig()
        config = _apply_sandbox_policy(load_config(path, self._secrets()), self.settings.sandbox)
        for problem in config.problems:
            log.warning("mcp servers: %s", problem.error())
        if self.settings.sandbox != "none":
            for server in config.servers.values():
                if server.transport == "stdio" and server.sandbox is False:
                    log.warning(
                        "mcp servers: %s: server '%s' runs WITHOUT the sandbox (\"sandbox\": "
                        "false), with the host's files and network",
                        config.source,
                        server.name,
                    )
        return config

    def _secrets(self) -> dict[str, str]:
        try:
            return load_secrets(self.settings.secrets, self.settings.secrets_file)
        except McpexecError:
            raise
        except OSError as exc:
            raise ConfigError(f"secrets_file cannot be read ({type(exc).__name__})") from None

    async def start(self) -> None:
        """Start the gateway (eager servers start now, lazy ones at first use). A servers file
        that cannot be read is logged and shown by :meth:`servers`; the gateway starts
        without downstream servers. A sandbox directory that cannot be opened fails."""
        if not self.configured or self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._reload_lock = asyncio.Lock()
        try:
            config = self._load()
        except McpexecError as exc:
            log.error("mcp servers: %s", exc)
            self._load_error = str(exc)
            config = GatewayConfig()
        self._problems = config.problems
        _make_sandbox_directory(self.settings.sandbox_directory)
        ready: asyncio.Future[None] = self._loop.create_future()
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._own(config, ready), name="gateway")
        await ready

    async def _own(self, config: GatewayConfig, ready: asyncio.Future[None]) -> None:
        assert self._stop is not None
        settings = self.settings
        confinement = ServerConfinement.from_settings(settings)  # set up at the first spawn
        gateway = Gateway(
            config,
            sandbox_directory=settings.sandbox_directory,
            confinement=confinement,
            sandbox_default=settings.sandbox != "none",
            max_concurrent_executions=settings.max_concurrent_executions,
            acquire_timeout_s=settings.tool_acquire_timeout_s,
            max_output_bytes=settings.max_tool_output_bytes,
            kill_grace_s=settings.kill_grace_s,
        )
        try:
            await gateway.start()
        except BaseException as exc:
            with contextlib.suppress(Exception):  # the start failure is the error to report
                await gateway.close()
            await confinement.stop()
            if not ready.done():
                error = exc if isinstance(exc, Exception) else RuntimeError(str(exc))
                if isinstance(exc, FsError):
                    error = ConfigError(f"sandbox_directory: {exc}")
                ready.set_exception(error)
            return
        self._gateway = gateway
        ready.set_result(None)
        try:
            await self._stop.wait()
        finally:
            self._gateway = None
            await gateway.close()
            await confinement.stop()

    async def close(self) -> None:
        """Stop every downstream server (their process groups die)."""
        task, self._task = self._task, None
        if task is None:
            return
        assert self._stop is not None
        self._stop.set()
        await asyncio.gather(task, return_exceptions=True)

    # -- discovery ------------------------------------------------------------------------------
    def _require(self) -> Gateway:
        if self._gateway is None:
            raise DownstreamUnavailable(
                "no MCP servers are configured on this server (settings mcp_config, "
                "sandbox_directory)"
            )
        return self._gateway

    async def list_tools(
        self, principal: Principal, server: str | None = None
    ) -> Sequence[CatalogTool]:
        """Every tool (``server`` narrows it), starting lazy servers first. No gateway: none."""
        del principal  # every authenticated caller may see the catalog
        if self._gateway is None:
            if server is not None:
                raise UnknownTool(f"No MCP server '{server}'", server=server)
            return ()
        known = set(self._gateway.config.servers)
        if self.settings.sandbox_directory is not None:
            known.add(FS_SERVER)
        if server is not None and server not in known:
            raise UnknownTool(f"No MCP server '{server}'", server=server)
        return await self._gateway.list_tools(server)

    def collisions(self) -> list[dict[str, Any]]:
        if self._gateway is None:
            return []
        return [{"name": c.name, "servers": list(c.servers)} for c in self._gateway.collisions]

    # -- calls --------------------------------------------------------------------------------
    async def call(
        self,
        principal: Principal,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        server: str | None = None,
        timeout_s: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> CallOutcome:
        """Call a tool synchronously. The tool's own refusals (``isError``, an ``fs`` path
        refused) are an outcome with status ``error``; the rest (``unknown_tool``,
        ``invalid_arguments``, ``pool_exhausted``, ``timeout``, ``server_lost``, …) raise."""
        # Calling a tool is submitting work: the same rule as a run's submit (tenancy.decide).
        if decide(principal.actor, Action.SUBMIT) is not Decision.ALLOW:
            raise Forbidden(f"role {principal.role!r} may not call tools", role=principal.role)
        if self._gateway is None:
            raise UnknownTool(f"No tool '{name}' (no MCP servers are configured)", tool=name)
        started = time.perf_counter()
        try:
            result = await self._gateway.call_tool(
                name, arguments, server=server, timeout_s=timeout_s, progress=progress
            )
        except ToolFailed as failed:
            elapsed = (time.perf_counter() - started) * 1000
            qualified = f"{failed.result.server}.{failed.result.tool}"
            outcome = CallOutcome(qualified, "error", elapsed, result=failed.result)
        except FsError as refused:
            elapsed = (time.perf_counter() - started) * 1000
            outcome = CallOutcome(_fs_name(name), "error", elapsed, error=refused)
        except McpexecError as exc:  # timeout, server_lost, …: counted, then raised
            # an unknown name is not a label value (anyone may make up names)
            where = "unknown.unknown" if exc.code == "unknown_tool" else name
            if server and exc.code != "unknown_tool":
                where = f"{server}.{name}"
            self.metrics.tool_call(where, exc.code, time.perf_counter() - started)
            raise
        else:
            elapsed = (time.perf_counter() - started) * 1000
            qualified = f"{result.server}.{result.tool}"
            outcome = CallOutcome(qualified, "success", elapsed, result=result)
        self.metrics.tool_call(outcome.tool, outcome.status, elapsed / 1000)
        return outcome

    # -- which workers may claim a tool run ------------------------------------------------------
    def worker_labels(self) -> frozenset[str]:
        """The labels this process's workers add (asked at every claim): ``server_label`` of
        every server its gateway has now (enabled), and of ``fs`` with a sandbox directory."""
        gateway = self._gateway
        if gateway is None:
            return frozenset()
        names = {n for n, s in gateway.config.servers.items() if s.enabled}
        if self.settings.sandbox_directory is not None:
            names.add(FS_SERVER)
        return frozenset(server_label(n) for n in names)

    @staticmethod
    def run_worker_labels(call: ToolCall | None, labels: Sequence[str]) -> tuple[str, ...]:
        """A run's ``worker_labels``: the caller's, plus its server's label for a tool run, so
        that only a worker whose gateway has that server claims it (docs/gateway.md)."""
        if call is None or call.server is None:
            return tuple(sorted(set(labels)))
        return tuple(sorted({*labels, server_label(call.server)}))

    def check_tool_run(self, call: ToolCall) -> None:
        """At submit, what can be known now: a server that is not configured (``unknown_tool``),
        and, once the server's tools are known, the tool and its arguments
        (``unknown_tool``, ``invalid_arguments``). A process without a gateway checks nothing
        (its workers may be elsewhere)."""
        gateway = self._gateway
        if gateway is None:
            return
        known = set(gateway.config.servers)
        if self.settings.sandbox_directory is not None:
            known.add(FS_SERVER)
        if call.server not in known:
            raise UnknownTool(f"No MCP server '{call.server}'", server=call.server)
        ready = {h.name for h in gateway.health() if h.state == "ready"} | {FS_SERVER}
        if call.server not in ready:
            return  # a lazy server not started yet: the attempt will tell
        tool = gateway.catalog().resolve(call.name, call.server)
        validate_arguments(tool, dict(call.arguments))

    async def run_tool(
        self, request: ExecRequest, sink: ExecSink, cancel: asyncio.Event
    ) -> ExecResult:
        """One attempt of a ``tool`` run, counted in ``mcpexec_tool_calls_total``."""
        started = time.monotonic()
        result = await self._run_tool(request, sink, cancel)
        call = request.spec.tool
        assert call is not None
        status = "success" if result.succeeded else "error"
        if result.failure is not None and result.failure.kind is not FailureKind.TOOL_ERROR:
            status = result.failure.kind.value
        self.metrics.tool_call(call.qualified, status, time.monotonic() - started)
        return result

    async def _run_tool(  # noqa: PLR0911 - one return per outcome of an attempt
        self, request: ExecRequest, sink: ExecSink, cancel: asyncio.Event
    ) -> ExecResult:
        """One attempt of a ``tool`` run (see :class:`ToolRunExecutor`); never raises for
        what the tool or its server does."""
        call = request.spec.tool
        assert call is not None
        started = time.monotonic()
        isolation = f"gateway ({call.server})"

        def failed(kind: FailureKind, message: str, result: Any = None) -> ExecResult:
            return ExecResult(
                succeeded=False,
                failure=Failure(kind=kind, message=message[:2000]),
                result=result,
                duration_s=time.monotonic() - started,
                isolation=isolation,
            )

        gateway = self._gateway
        if gateway is None:
            return failed(
                FailureKind.SPAWN_ERROR,
                "no MCP servers are configured in this worker's process (settings mcp_config, "
                "sandbox_directory)",
            )

        async def progress(done: float, total: float | None, message: str | None) -> None:
            value = min(max(done / total, 0.0), 1.0) if total else None
            text = message if message else (f"{done:g}/{total:g}" if total else f"{done:g}")
            await sink.progress(Progress(value=value, message=text[:1000]))

        calling = asyncio.create_task(
            gateway.call_tool(call.qualified, call.arguments, progress=progress),
            name=f"tool-run-{request.run_id}",
        )
        cancelled = asyncio.create_task(cancel.wait())
        try:
            await asyncio.wait(
                {calling, cancelled},
                timeout=request.limits.timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:  # our own cancellation (or a timeout, or cancel): the call goes too
            cancelled.cancel()
            if not calling.done():
                calling.cancel()
                await asyncio.gather(calling, return_exceptions=True)
        if calling.cancelled():
            if cancel.is_set():
                return failed(FailureKind.CANCELLED, "cancelled (notifications/cancelled sent)")
            return failed(
                FailureKind.TIMEOUT,
                f"{call.qualified} did not finish within {request.limits.timeout_s:g} s",
            )
        exc = calling.exception()
        if isinstance(exc, ToolFailed):
            await self._output(sink, exc.result)
            return failed(FailureKind.TOOL_ERROR, str(exc), exc.result.to_dict())
        if isinstance(exc, McpexecError):
            return failed(_failure_kind(exc), f"{exc.code}: {exc}")
        if exc is not None:
            log.error("run %s: tool call failed: %r", request.run_id, exc)
            return failed(FailureKind.TOOL_ERROR, f"{type(exc).__name__}: {exc}")
        result = calling.result()
        await self._output(sink, result)
        return ExecResult(
            succeeded=True,
            result=result.to_dict(),
            output_truncated=result.truncated,
            duration_s=time.monotonic() - started,
            isolation=isolation,
        )

    @staticmethod
    async def _output(sink: ExecSink, result: ToolResult) -> None:
        text = result.text()
        if text:
            await sink.output(Stream.STDOUT, (text + "\n").encode())

    # -- servers ------------------------------------------------------------------------------
    def servers(self, principal: Principal) -> dict[str, Any]:
        """Health of every configured server, plus the problems of the servers file."""
        del principal
        gateway = self._gateway
        health = [h.to_dict() for h in gateway.health()] if gateway is not None else []
        if gateway is not None and self.settings.sandbox_directory is not None:
            health.insert(0, _fs_health(len(gateway.catalog().tools(FS_SERVER))))
        return {
            "servers": health,
            "config": str(self.settings.mcp_config) if self.settings.mcp_config else None,
            "problems": [_problem_view(p) for p in self._problems],
            "load_error": self._load_error,
            "collisions": self.collisions(),
        }

    def server(self, principal: Principal, name: str) -> dict[str, Any]:
        for entry in self.servers(principal)["servers"]:
            if entry["name"] == name:
                gateway = self._require()
                tools = gateway.catalog().tools(name)
                return {**entry, "tools": [t.qualified for t in tools]}
        raise UnknownTool(f"No MCP server '{name}'", server=name)

    async def reload(self, principal: Principal) -> dict[str, Any]:
        """Re-read the servers file: add, remove and restart what changed (calls in flight on
        unchanged servers go on). A file that cannot be read changes nothing and raises."""
        if not principal.is_admin:
            raise Forbidden("reloading the MCP servers needs an admin token")
        return await self._reload()

    async def _reload(self) -> dict[str, Any]:
        gateway = self._gateway
        if gateway is None:  # nothing configured: nothing to reload
            return {**_diff_view(ConfigDiff((), (), (), ())), "problems": []}
        assert self._reload_lock is not None
        async with self._reload_lock:
            config = self._load()  # raises gateway_config_invalid: the old servers stay
            diff = await gateway.reload(config)
            self._problems = config.problems
            self._load_error = None
        log.info(
            "mcp servers reloaded: added %s, removed %s, restarted %s",
            list(diff.added),
            list(diff.removed),
            list(diff.changed),
        )
        return {**_diff_view(diff), "problems": [_problem_view(p) for p in config.problems]}

    def reload_soon(self) -> None:
        """Reload from a signal handler (SIGHUP): errors are logged, never raised."""
        loop = self._loop
        if loop is None or loop.is_closed() or self._gateway is None:
            return

        async def reload() -> None:
            try:
                await self._reload()
            except McpexecError as exc:
                log.error("mcp servers: reload refused: %s", exc)

        loop.call_soon_threadsafe(lambda: loop.create_task(reload(), name="gateway-reload"))


#: How a tool run's failure is classified (retry policies name these kinds).
_FAILURE_KINDS: tuple[tuple[type[McpexecError], FailureKind], ...] = (
    (ServerLost, FailureKind.SERVER_LOST),
    (DownstreamUnavailable, FailureKind.SERVER_LOST),
    (ToolTimeout, FailureKind.TIMEOUT),
    (PoolExhausted, FailureKind.TIMEOUT),
    (UnknownTool, FailureKind.VALIDATION),
    (InvalidArguments, FailureKind.VALIDATION),
)


def _failure_kind(exc: McpexecError) -> FailureKind:
    for cls, kind in _FAILURE_KINDS:
        if isinstance(exc, cls):
            return kind
    return FailureKind.TOOL_ERROR  # ToolFailed, a JSON-RPC refusal, an fs refusal


class ToolRunExecutor(Executor):
    """The worker's executor: ``tool`` runs go to the gateway, every other run to ``inner``.

    A tool run is an attempt like any other: the worker records it, retries it by its policy
    (``tool_error``, ``timeout``, ``server_lost``), and cancels it (the call's task is
    cancelled, which sends ``notifications/cancelled`` downstream). The result (content blocks
    and structured content) is the run's ``result``; its text is also the run's stdout."""

    def __init__(self, inner: Executor, tools: ToolsService) -> None:
        self.inner = inner
        self.tools = tools
        self.isolation = inner.isolation

    def check_spec(self, spec: Any) -> str | None:
        return None if spec.tool is not None else self.inner.check_spec(spec)

    async def start(self) -> None:
        await self.inner.start()
        self.isolation = self.inner.isolation

    async def stop(self) -> None:
        await self.inner.stop()

    async def execute(
        self, request: ExecRequest, sink: ExecSink, cancel: asyncio.Event
    ) -> ExecResult:
        if request.spec.tool is None:
            return await self.inner.execute(request, sink, cancel)
        return await self.tools.run_tool(request, sink, cancel)


def _make_sandbox_directory(box: Path | None) -> None:
    """The seed's ``SANDBOX_DIRECTORY`` need not exist yet: made (0700) at start."""
    if box is None:
        return
    try:
        Path(box).mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(
            f"sandbox_directory {box} cannot be created ({type(exc).__name__})"
        ) from None


def _fs_name(name: str) -> str:
    return name if name.startswith(f"{FS_SERVER}.") else f"{FS_SERVER}.{name}"


_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,30}[a-z0-9])?$")


def server_label(server: str) -> str:
    """The worker label of an MCP server: ``mcp.<name>`` when that is a valid label
    (lower-case, at most 32 characters), else ``mcp.<start of the name>.<8 hex of its
    SHA-256>`` (distinct for names that differ only in case or length)."""
    plain = f"mcp.{server}"
    if _LABEL.fullmatch(plain):
        return plain
    digest = hashlib.sha256(server.encode()).hexdigest()[:8]
    start = re.sub(r"[^a-z0-9._-]", "", server.lower())[:18].strip("._-")
    return f"mcp.{start}.{digest}" if start else f"mcp.{digest}"


def _apply_sandbox_policy(config: GatewayConfig, mode: str) -> GatewayConfig:
    """``MCPEXEC_SANDBOX=strict``, as for runs: no stdio server outside the sandbox and none
    with the network; such an entry is a problem naming the field (the others load)."""
    if mode != "strict":
        return config
    servers = dict(config.servers)
    problems = list(config.problems)
    for name, server in config.servers.items():
        if server.transport != "stdio":
            continue
        field = "sandbox" if server.sandbox is False else "network" if server.network else None
        if field is not None:
            del servers[name]
            problems.append(
                ConfigProblem(
                    config.source,
                    name,
                    field,
                    f'"{field}": {str(field == "network").lower()} is refused with '
                    "MCPEXEC_SANDBOX=strict (as for runs)",
                )
            )
    return dataclasses.replace(config, servers=servers, problems=tuple(problems))


def _fs_health(tool_count: int) -> dict[str, Any]:
    return {
        "name": FS_SERVER,
        "transport": "builtin",
        "state": "ready",
        "pid": None,
        "pids": [],
        "restarts": 0,
        "last_error": None,
        "tool_count": tool_count,
        "started_at": None,
        "in_flight": 0,
        "sandbox": None,
        "sandbox_from": None,
        "network": None,
        "limits": None,
    }


def _problem_view(problem: ConfigProblem) -> dict[str, str]:
    return {
        "file": problem.file,
        "server": problem.server,
        "field": problem.field,
        "message": str(problem.error()),
    }


def _diff_view(diff: ConfigDiff) -> dict[str, Any]:
    return {
        "added": list(diff.added),
        "removed": list(diff.removed),
        "restarted": list(diff.changed),
        "unchanged": list(diff.unchanged),
    }
