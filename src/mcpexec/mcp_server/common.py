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
from mcp_types import INVALID_PARAMS
from pydantic import ValidationError

from mcpexec.app import App, Principal
from mcpexec.errors import Forbidden, McpexecError, Unauthorized
from mcpexec.mcp_server.auth import REFUSED, caller
from mcpexec.mcp_server.views import ExecuteResult, FailureInfo
from mcpexec.models import DEFAULT_TENANT, Run, RunRequest, Stream

#: The most ``execute`` returns of each stream (its tail).
DEFAULT_TAIL_BYTES = 16 * 1024
MAX_TAIL_BYTES = 1024 * 1024
_READ_CHUNK = 1024 * 1024
#: How long ``execute`` waits by default before it returns a run that is still going: below
#: the usual client request timeouts (the TypeScript SDK's is 60 s, others 30-120 s).
EXECUTE_WAIT_S = 40.0
MAX_EXECUTE_WAIT_S = 3600.0
#: ``cancel_run`` waits at most the kill grace plus this for the cancel to take effect.
CANCEL_WAIT_SLACK_S = 5.0

ProgressFn = Callable[[float, float | None, str | None], Awaitable[None]]


@dataclass
class Deps:
    """What the MCP adapter needs: the App, whether callers are local (stdio, in-memory) and
    the hook that tells resource subscribers a run is being watched."""

    app: App
    local: bool
    progress_interval_s: float = 1.0
    on_run_touched: Callable[[Run, Principal], None] = field(default=lambda _run, _p: None)
    #: The tenant a local caller is the operator of (``mcpexec mcp --tenant``).
    tenant: str = DEFAULT_TENANT

    def principal(self) -> Principal:
        return caller(local=self.local, tenant=self.tenant)


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


@contextmanager
def resource_errors(uri: str) -> Iterator[None]:
    """Like :func:`tool_errors` for ``resources/read``: a run that is not there (or a bad URI)
    is the caller's mistake, -32602 with the domain message, never an internal error."""
    try:
        yield
    except (Unauthorized, Forbidden) as exc:
        raise MCPError(code=REFUSED, message=exc.message, data={"code": exc.code}) from exc
    except McpexecError as exc:
        raise MCPError(
            code=INVALID_PARAMS, message=f"{exc.message} ({exc.code})", data={"uri": uri}
        ) from exc


#: The one sentence for the most common wrong shape: a command line given as a string.
COMMAND_HINT = (
    'command is an argv list, e.g. ["ls", "-l"]; to run a command line as a string, '
    'pass it as shell: "ls -l"'
)


def describe(exc: ValidationError) -> str:
    """A pydantic error as short sentences that name each field (no URLs, no input echo)."""
    problems: list[str] = []
    for err in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in err["loc"])
        if err["loc"][:1] == ("command",) and err["type"] == "list_type":
            problems.append(COMMAND_HINT)
            continue
        message = str(err["msg"]).removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(dict.fromkeys(problems))


def build_request(fields: dict[str, Any]) -> RunRequest:
    given = {k: v for k, v in fields.items() if v is not None}
    try:
        return RunRequest.model_validate(given)
    except ValidationError as exc:
        raise ToolError(f"invalid run spec: {describe(exc)}") from None


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
        if run.terminal or remaining <= 0 or deps.app.shutting_down:  # wait returns at once then
            return run
        await progress(run)


def utf8_page(data: bytes, offset: int, cut: bool) -> tuple[bytes, int]:
    """A log page on character boundaries: leading continuation bytes (an offset inside a
    character) are skipped and a character cut at the page's end is left for the next page.
    Returns the page and its real start offset; never empties a non-empty page."""
    start = 0
    while start < min(len(data), 3) and data[start] & 0xC0 == 0x80:
        start += 1
    end = len(data)
    if cut:
        back = 0
        while back < min(end - start, 4) and data[end - 1 - back] & 0xC0 == 0x80:
            back += 1
        lead = end - 1 - back
        if lead >= start and data[lead] >= 0xC0 and _utf8_length(data[lead]) > back + 1:
            end = lead
    if end <= start:  # a page smaller than one character: return the bytes as they are
        return data, offset
    return data[start:end], offset + start


def _utf8_length(lead: int) -> int:
    return 4 if lead >= 0xF0 else 3 if lead >= 0xE0 else 2


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
    )
