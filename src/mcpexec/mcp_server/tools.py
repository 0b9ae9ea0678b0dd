"""The MCP tools. Each calls the App only; names and shapes are part of the product."""

from __future__ import annotations

import base64
import mimetypes
from datetime import datetime
from typing import Annotated, Any

import anyio
from mcp import types
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from mcpexec.mcp_server import schemas as sch
from mcpexec.mcp_server.common import (
    CANCEL_WAIT_SLACK_S,
    DEFAULT_TAIL_BYTES,
    EXECUTE_WAIT_S,
    MAX_EXECUTE_WAIT_S,
    MAX_TAIL_BYTES,
    Deps,
    build_request,
    execute_result,
    tool_errors,
    utf8_page,
    wait_with_progress,
)
from mcpexec.mcp_server.views import (
    ArtifactInfo,
    ArtifactList,
    ArtifactRead,
    ExecuteResult,
    LogRead,
    RunInfo,
    RunList,
    SubmitResult,
)
from mcpexec.models import (
    InputFile,
    Limits,
    Notify,
    RetryPolicy,
    RunFilter,
    RunStatus,
    Script,
    Stream,
    ToolCall,
)
from mcpexec.tenancy import Action

MAX_GET_WAIT_S = 60.0
MAX_LOG_READ = 1024 * 1024
MAX_ARTIFACT_READ = 8 * 1024 * 1024

# The argument types: validation only (the published schemas are in schemas.py).
RunId = str
Command = list[str] | None
Shell = str | None
Env = dict[str, str] | None
Inputs = dict[str, str | InputFile] | None
Labels = dict[str, str] | None
#: Only a worker with all of these runs it (``mcpexec worker --labels``).
WorkerLabelList = list[str] | None
Secrets = list[str] | None
IdemKey = str | None
TaskRef = str | None  # a defined task, NAME or NAME@VERSION (issue 11)
TaskParams = dict[str, Any] | None

_NOT_AN_ERROR = (
    "A non-zero exit is a successful call with status failed; isError is a refused call."
)


def register_tools(server: MCPServer[Any], deps: Deps) -> None:  # noqa: PLR0915 - one closure per tool
    app = deps.app

    @server.tool(
        title="Execute",
        annotations=sch.hints(read_only=False),
        description=(
            "Run a command, shell line, script (sandboxed) or downstream tool; returns status, "
            f"exit code, output tails, result. Waits up to wait_s (default {EXECUTE_WAIT_S:g}), "
            f"then returns the run as it is: continue with get_run. {_NOT_AN_ERROR}"
        ),
    )
    async def execute(
        ctx: Context,
        command: Command = None,
        shell: Shell = None,
        script: Script | None = None,
        tool: ToolCall | None = None,
        env: Env = None,
        inputs: Inputs = None,
        timeout_s: float | None = None,
        limits: Limits | None = None,
        network: bool = False,
        secrets: Secrets = None,
        retry: RetryPolicy | None = None,
        labels: Labels = None,
        idempotency_key: IdemKey = None,
        task: TaskRef = None,
        params: TaskParams = None,
        wait_s: Annotated[float, Field(ge=0, le=MAX_EXECUTE_WAIT_S)] = EXECUTE_WAIT_S,
        max_bytes: Annotated[int, Field(ge=0, le=MAX_TAIL_BYTES)] = DEFAULT_TAIL_BYTES,
    ) -> ExecuteResult:
        spec: dict[str, Any] = dict(command=command, shell=shell, script=script, env=env)
        spec.update(inputs=inputs, timeout_s=timeout_s, limits=limits, labels=labels)
        spec.update(network=network, secrets=secrets, retry=retry, task=task, params=params)
        spec.update(tool=tool)
        request = build_request({**spec, "idempotency_key": idempotency_key})
        principal = deps.principal()
        with tool_errors():
            run, _ = await app.submit(request, principal)
            deps.on_run_touched(run, principal)
            try:
                run = await wait_with_progress(deps, run.id, principal, wait_s, ctx.report_progress)
            except anyio.get_cancelled_exc_class():
                # The caller cancelled the request: the run dies with it. A run that outlives
                # the bounded wait is returned (not cancelled) and keeps going.
                with anyio.CancelScope(shield=True):
                    await app.cancel(run.id, principal)
                raise
            return await execute_result(app, run, principal, max_bytes)

    @server.tool(
        title="Submit run",
        annotations=sch.hints(read_only=False),
        description=(
            "Queue a run (execute's fields, plus priority and run_at); returns its id at once. "
            "Follow it with get_run."
        ),
    )
    async def submit_run(
        command: Command = None,
        shell: Shell = None,
        script: Script | None = None,
        tool: ToolCall | None = None,
        env: Env = None,
        inputs: Inputs = None,
        timeout_s: float | None = None,
        limits: Limits | None = None,
        network: bool = False,
        secrets: Secrets = None,
        retry: RetryPolicy | None = None,
        labels: Labels = None,
        worker_labels: WorkerLabelList = None,
        priority: Annotated[int, Field(ge=-100, le=100)] = 0,
        run_at: datetime | None = None,
        idempotency_key: IdemKey = None,
        task: TaskRef = None,
        params: TaskParams = None,
        notify: Notify | None = None,
    ) -> SubmitResult:
        spec: dict[str, Any] = dict(command=command, shell=shell, script=script, env=env)
        spec.update(inputs=inputs, timeout_s=timeout_s, limits=limits, labels=labels)
        spec.update(network=network, secrets=secrets, retry=retry, run_at=run_at)
        spec.update(priority=priority, task=task, params=params, tool=tool, notify=notify)
        spec.update(worker_labels=worker_labels)
        request = build_request({**spec, "idempotency_key": idempotency_key})
        principal = deps.principal()
        with tool_errors():
            run, created = await app.submit(request, principal)
            deps.on_run_touched(run, principal)
            return SubmitResult(run_id=run.id, status=run.status.value, created=created)

    @server.tool(
        title="Get run",
        annotations=sch.hints(read_only=True),
        description=(
            "A run's status, exit code, failure and result; wait_s waits for the end; detail "
            "adds spec, isolation and limits."
        ),
    )
    async def get_run(
        ctx: Context,
        run_id: RunId,
        wait_s: Annotated[float, Field(ge=0, le=MAX_GET_WAIT_S)] = 0.0,
        detail: bool = False,
    ) -> RunInfo:
        principal = deps.principal()
        with tool_errors():
            if wait_s <= 0:
                run = await app.get(run_id, principal)
            else:
                run = await wait_with_progress(deps, run_id, principal, wait_s, ctx.report_progress)
            deps.on_run_touched(run, principal)
            if not detail:
                return RunInfo.of(run)
            attempts = await app.attempts(run_id, principal)
            return RunInfo.detailed(run, attempts[-1] if attempts else None)

    @server.tool(
        title="Cancel run",
        annotations=sch.hints(read_only=False, destructive=True),
        description=(
            "Cancel a run (its process tree is killed); returns it once cancelled, or with "
            "cancel_requested while stopping."
        ),
    )
    async def cancel_run(run_id: RunId) -> RunInfo:
        principal = deps.principal()
        with tool_errors():
            current = await app.get(run_id, principal, Action.CANCEL)
            if current.terminal:
                raise ToolError(
                    f"run {run_id} already finished ({current.status.value}); nothing to cancel"
                )
            run = await app.cancel(run_id, principal)
            if not run.terminal:
                bound = app.settings.kill_grace_s + CANCEL_WAIT_SLACK_S
                run = await app.wait(run_id, principal, bound)
            return RunInfo.of(run)

    @server.tool(
        title="List runs",
        annotations=sch.hints(read_only=True),
        description="List runs, newest first, by status and labels; paginated.",
    )
    async def list_runs(
        status: list[RunStatus] | None = None,
        labels: Labels = None,
        limit: Annotated[int, Field(ge=1, le=100)] = 20,
        cursor: str | None = None,
    ) -> RunList:
        principal = deps.principal()
        with tool_errors():
            filter = RunFilter(status=frozenset(status or ()), labels=labels or {})
            page = await app.list_runs(principal, filter, limit, cursor)
            return RunList(runs=[RunInfo.of(r) for r in page.runs], next_cursor=page.next_cursor)

    @server.tool(
        title="Read logs",
        annotations=sch.hints(read_only=True),
        description=(
            "Read a run's stdout or stderr from a byte offset (whole UTF-8 characters); "
            "continue from next_offset while still_writing."
        ),
    )
    async def read_logs(
        run_id: RunId,
        stream: Stream = Stream.STDOUT,
        offset: Annotated[int, Field(ge=0)] = 0,
        max_bytes: Annotated[int, Field(ge=1, le=MAX_LOG_READ)] = 64 * 1024,
    ) -> LogRead:
        principal = deps.principal()
        with tool_errors():
            data, nxt, complete = await app.read_logs(run_id, principal, stream, offset, max_bytes)
            page, start = utf8_page(data, offset, cut=len(data) == max_bytes)
            end = start + len(page)
            return LogRead(
                run_id=run_id,
                stream=stream.value,
                offset=start,
                next_offset=end,
                data=page.decode("utf-8", errors="replace"),
                still_writing=not complete or end < nxt,
            )

    @server.tool(
        title="List artifacts",
        annotations=sch.hints(read_only=True),
        description="List the files a run saved as artifacts.",
    )
    async def list_artifacts(run_id: RunId) -> ArtifactList:
        principal = deps.principal()
        with tool_errors():
            found = await app.artifacts(run_id, principal)
            return ArtifactList(run_id=run_id, artifacts=[ArtifactInfo.of(a) for a in found])

    @server.tool(
        title="Read artifact",
        annotations=sch.hints(read_only=True),
        description="Read one artifact of a run: text as text, other files as a blob.",
    )
    async def read_artifact(
        run_id: RunId,
        name: str,
        max_bytes: Annotated[int, Field(ge=1, le=MAX_ARTIFACT_READ)] = 1024 * 1024,
    ) -> Annotated[types.CallToolResult, ArtifactRead]:
        principal = deps.principal()
        with tool_errors():
            artifact, chunks = await app.artifact_bytes(run_id, name, principal, max_bytes)
            data = b"".join([chunk async for chunk in chunks])
        truncated = artifact.size > len(data)
        text = _as_text(data, truncated)
        mime = mimetypes.guess_type(name)[0] or ("text/plain" if text is not None else None)
        mime = mime or "application/octet-stream"
        info = ArtifactRead(
            run_id=run_id,
            name=name,
            size=artifact.size,
            sha256=artifact.sha256,
            mime_type=mime,
            text=text,
            truncated=truncated,
        )
        content: types.ContentBlock
        if text is not None:
            content = types.TextContent(type="text", text=text)
        else:
            blob = types.BlobResourceContents(
                uri=f"mcpexec://runs/{run_id}/artifacts/{name}",
                mime_type=mime,
                blob=base64.b64encode(data).decode(),
            )
            content = types.EmbeddedResource(type="resource", resource=blob)
        return types.CallToolResult(
            content=[content], structured_content=info.model_dump(mode="json")
        )

    @server.tool(
        title="Rerun",
        annotations=sch.hints(read_only=False),
        description="Run a run's spec again as a new run; returns at once.",
    )
    async def rerun(run_id: RunId) -> SubmitResult:
        principal = deps.principal()
        with tool_errors():
            run = await app.rerun(run_id, principal)
            deps.on_run_touched(run, principal)
            return SubmitResult(run_id=run.id, status=run.status.value, created=True)

    sch.publish(server, sch.tool_schemas(app.settings))


def _as_text(data: bytes, truncated: bool) -> str | None:
    """UTF-8 text, or None for binary data (a cut multi-byte character at the end is fine)."""
    if b"\0" in data:
        return None
    for cut in range(4 if truncated else 1):
        try:
            return data[: len(data) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return None
