"""Shared pieces of the MCP tools, resources and tasks: the server's dependencies, error
translation, run-spec validation, waiting with progress and the ``execute`` result."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from mcpexec.app import App, Principal
from mcpexec.errors import Forbidden, McpexecError, Unauthorized
from mcpexec.mcp_server.auth import REFUSED, caller
from mcpexec.mcp_server.views import ExecuteResult, FailureInfo
from mcpexec.models import Run, RunRequest, Stream

#: The most ``execute`` returns of each stream (its tail).
DEFAULT_TAIL_BYTES = 16 * 1024
MAX_TAIL_BYTES = 1024 * 1024
_READ_CHUNK = 1024 * 1024
#: ``execute`` waits for the run's own timeout plus this (kill grace, queueing, reporting).
WAIT_SLACK_S = 30.0

ProgressFn = Callable[[float, float | None, str | None], Awaitable[None]]


@dataclass
class Deps:
    """What the MCP adapter needs: the App, whether callers are local (stdio, in-memory) and
    the hook that tells resource subscribers a run is being watched."""

    app: App
    local: bool
    progress_interval_s: float = 1.0
    on_run_touched: Callable[[Run, Principal], None] = field(default=lambda _run, _p: None)

    def principal(self) -> Principal:
        return caller(local=self.local)


@contextmanager
def tool_errors() -> Iterator[None]:
    """Domain errors a model can fix become tool errors (``isError``); refusals stay protocol
    errors."""
    try:
        yield
    except (Unauthorized, Forbidden) as exc:
        raise MCPError(code=REFUSED, message=exc.message, data={"code": exc.code}) from exc
    except McpexecError as exc:
        raise ToolError(f"{exc.message} ({exc.code})") from exc


def build_request(fields: dict[str, Any]) -> RunRequest:
    given = {k: v for k, v in fields.items() if v is not None}
    try:
        return RunRequest.model_validate(given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'spec'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ToolError(f"invalid run spec: {problems}") from None


class ProgressReporter:
    """Turns a run's state into increasing ``notifications/progress`` values: the run's own
    progress (percent) when it reports one, otherwise the seconds waited so far."""

    def __init__(self, report: ProgressFn) -> None:
        self._report = report
        self._start = time.monotonic()
        self._last = 0.0

    async def __call__(self, run: Run) -> None:
        if run.progress is not None and run.progress.value is not None:
            value, total = run.progress.value * 100, 100.0
            message = run.progress.message or f"{value:.0f}%"
        else:
            value, total = round(time.monotonic() - self._start, 3), None
            message = f"{run.status.value} ({value:.0f}s)"
            if run.progress is not None and run.progress.message:
                message = run.progress.message
        if value <= self._last:
            return
        self._last = value
        await self._report(value, total, message)


async def wait_with_progress(
    deps: Deps, run_id: str, principal: Principal, timeout_s: float, report: ProgressFn
) -> Run:
    """The run once terminal, or as it is after ``timeout_s``; reports progress meanwhile."""
    progress = ProgressReporter(report)
    deadline = time.monotonic() + max(timeout_s, 0.0)
    while True:
        remaining = deadline - time.monotonic()
        step = max(0.0, min(deps.progress_interval_s, remaining))
        run = await deps.app.wait(run_id, principal, step)
        if run.terminal or remaining <= 0:
            return run
        await progress(run)


def execute_timeout(deps: Deps, request: RunRequest) -> float:
    timeout = request.timeout_s or deps.app.settings.default_timeout_s
    return timeout + deps.app.settings.kill_grace_s + WAIT_SLACK_S


async def read_tail(
    app: App, run_id: str, principal: Principal, stream: Stream, cap: int
) -> tuple[str, bool]:
    """The last ``cap`` bytes of a stream (as text) and whether anything came before them."""
    offset, tail, total = 0, b"", 0
    while True:
        data, offset, _ = await app.read_logs(run_id, principal, stream, offset, _READ_CHUNK)
        total += len(data)
        tail = (tail + data)[-cap:] if cap else b""
        if len(data) < _READ_CHUNK:
            break
    return tail.decode("utf-8", errors="replace"), total > len(tail)


async def execute_result(
    app: App, run: Run, principal: Principal, tail_bytes: int
) -> ExecuteResult:
    cap = max(0, min(tail_bytes, MAX_TAIL_BYTES))
    stdout, out_cut = await read_tail(app, run.id, principal, Stream.STDOUT, cap)
    stderr, err_cut = await read_tail(app, run.id, principal, Stream.STDERR, cap)
    artifacts = [a.name for a in await app.artifacts(run.id, principal)] if run.terminal else []
    attempts = await app.attempts(run.id, principal)
    last = attempts[-1] if attempts else None
    duration = None
    if run.started_at is not None and run.finished_at is not None:
        duration = (run.finished_at - run.started_at).total_seconds()
    failure = None
    if run.failure is not None:
        failure = FailureInfo(kind=run.failure.kind.value, message=run.failure.message)
    return ExecuteResult(
        run_id=run.id,
        status=run.status.value,
        exit_code=run.exit_code,
        failure=failure,
        stdout=stdout,
        stderr=stderr,
        stdout_truncated=out_cut or run.output_truncated,
        stderr_truncated=err_cut or run.output_truncated,
        result=run.result,
        artifacts=artifacts,
        duration_s=duration,
        isolation=last.isolation if last is not None else None,
        limits=last.limits if last is not None else None,
    )
