"""The MCP tools. Each calls the App only; names and shapes are part of the product."""

from __future__ import annotations

import base64
import mimetypes
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import anyio
from mcp import types
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from mcpexec.mcp_server.common import (
    DEFAULT_TAIL_BYTES,
    Deps,
    build_request,
    execute_result,
    execute_timeout,
    tool_errors,
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
from mcpexec.models import InputFile, Limits, RetryPolicy, RunFilter, RunStatus, Script, Stream

MAX_GET_WAIT_S = 60.0
MAX_LOG_READ = 1024 * 1024
MAX_ARTIFACT_READ = 8 * 1024 * 1024

RunId = Annotated[str, Field(description="the run id (from execute, submit_run or list_runs)")]
Command = Annotated[
    list[str] | None, Field(description='argv run without a shell, e.g. ["ls", "-l"]')
]
Shell = Annotated[str | None, Field(description="a string run with sh -c")]
ScriptArg = Annotated[Script | None, Field(description="{language, source}")]
Env = Annotated[dict[str, str] | None, Field(description="extra environment variables")]
Inputs = Annotated[
    dict[str, str | InputFile] | None,
    Field(description="files written into the working directory first: name -> text"),
]
Timeout = Annotated[
    float | None, Field(description="seconds before the run is killed (server default if unset)")
]
Labels = Annotated[dict[str, str] | None, Field(description="labels to filter runs by later")]
Network = Annotated[
    bool, Field(description="network access for the run (off by default; never in strict mode)")
]
Retry = Annotated[
    RetryPolicy | None,
    Field(description="retry policy: {max_attempts, backoff, delay_s, max_delay_s, retry_on}"),
]
Secrets = Annotated[
    list[str] | None,
    Field(description="names of secrets configured on the server to expose as env variables"),
]
IdemKey = Annotated[
    str | None, Field(description="a retried submit with the same key returns the same run")
]


def register_tools(server: MCPServer[Any], deps: Deps) -> None:  # noqa: PLR0915 - one closure per tool
    app = deps.app

    @server.tool(
        description=(
            "Run a command, shell string or script and wait for it to finish (up to its "
            "timeout); returns status, exit code, output tails, result and artifact names."
        )
    )
    async def execute(
        ctx: Context,
        command: Command = None,
        shell: Shell = None,
        script: ScriptArg = None,
        env: Env = None,
        inputs: Inputs = None,
        timeout_s: Timeout = None,
        limits: Limits | None = None,
        network: Network = False,
        secrets: Secrets = None,
        retry: Retry = None,
        labels: Labels = None,
        idempotency_key: IdemKey = None,
        tail_bytes: Annotated[
            int, Field(ge=0, le=1024 * 1024, description="how much of each stream to return")
        ] = DEFAULT_TAIL_BYTES,
    ) -> ExecuteResult:
        spec: dict[str, Any] = dict(command=command, shell=shell, script=script, env=env)
        spec.update(inputs=inputs, timeout_s=timeout_s, limits=limits, labels=labels)
        spec.update(network=network, secrets=secrets, retry=retry)
        request = build_request({**spec, "idempotency_key": idempotency_key})
        principal = deps.principal()
        with tool_errors():
            run, _ = await app.submit(request, principal)
            deps.on_run_touched(run, principal)
            try:
                run = await wait_with_progress(
                    deps, run.id, principal, execute_timeout(deps, request), ctx.report_progress
                )
            except anyio.get_cancelled_exc_class():
                # The caller gave up on the request: the run dies with it (submit_run outlives).
                with anyio.CancelScope(shield=True):
                    await app.cancel(run.id, principal)
                raise
            return await execute_result(app, run, principal, tail_bytes)

    @server.tool(
        description=(
            "Queue a command, shell string or script and return at once with its run id; "
            "follow it with get_run, read_logs, cancel_run."
        )
    )
    async def submit_run(
        command: Command = None,
        shell: Shell = None,
        script: ScriptArg = None,
        env: Env = None,
        inputs: Inputs = None,
        timeout_s: Timeout = None,
        limits: Limits | None = None,
        network: Network = False,
        secrets: Secrets = None,
        retry: Retry = None,
        labels: Labels = None,
        priority: Annotated[int, Field(ge=-100, le=100, description="higher runs first")] = 0,
        run_at: Annotated[
            datetime | None, Field(description="start no sooner than this ISO 8601 time")
        ] = None,
        idempotency_key: IdemKey = None,
    ) -> SubmitResult:
        spec: dict[str, Any] = dict(command=command, shell=shell, script=script, env=env)
        spec.update(inputs=inputs, timeout_s=timeout_s, limits=limits, labels=labels)
        spec.update(network=network, secrets=secrets, retry=retry, run_at=run_at)
        spec.update(priority=priority)
        request = build_request({**spec, "idempotency_key": idempotency_key})
        principal = deps.principal()
        with tool_errors():
            run, created = await app.submit(request, principal)
            deps.on_run_touched(run, principal)
            return SubmitResult(run_id=run.id, status=run.status.value, created=created)

    @server.tool(
        description=(
            "Get a run's status, exit code, failure and result; wait_s (up to 60) waits for it "
            "to finish and returns as soon as it does."
        )
    )
    async def get_run(
        ctx: Context,
        run_id: RunId,
        wait_s: Annotated[float, Field(ge=0, le=MAX_GET_WAIT_S)] = 0.0,
    ) -> RunInfo:
        principal = deps.principal()
        with tool_errors():
            if wait_s <= 0:
                run = await app.get(run_id, principal)
            else:
                run = await wait_with_progress(deps, run_id, principal, wait_s, ctx.report_progress)
            deps.on_run_touched(run, principal)
            return RunInfo.of(run)

    @server.tool(description="Cancel a pending or running run; its whole process tree is killed.")
    async def cancel_run(run_id: RunId) -> RunInfo:
        principal = deps.principal()
        with tool_errors():
            current = await app.get(run_id, principal)
            if current.terminal:
                raise ToolError(
                    f"run {run_id} already finished ({current.status.value}); nothing to cancel"
                )
            return RunInfo.of(await app.cancel(run_id, principal))

    @server.tool(description="List runs, newest first, filtered by status and labels; paginated.")
    async def list_runs(
        status: Annotated[list[RunStatus] | None, Field(description="any of these")] = None,
        labels: Annotated[dict[str, str] | None, Field(description="all of these")] = None,
        limit: Annotated[int, Field(ge=1, le=100)] = 20,
        cursor: Annotated[str | None, Field(description="next_cursor of the last page")] = None,
    ) -> RunList:
        principal = deps.principal()
        with tool_errors():
            filter = RunFilter(status=frozenset(status or ()), labels=labels or {})
            page = await app.list_runs(principal, filter, limit, cursor)
            return RunList(runs=[RunInfo.of(r) for r in page.runs], next_cursor=page.next_cursor)

    @server.tool(
        description=(
            "Read a run's stdout or stderr from a byte offset; returns next_offset and whether "
            "the run is still writing."
        )
    )
    async def read_logs(
        run_id: RunId,
        stream: Stream = Stream.STDOUT,
        offset: Annotated[int, Field(ge=0)] = 0,
        limit: Annotated[int, Field(ge=1, le=MAX_LOG_READ)] = 64 * 1024,
    ) -> LogRead:
        principal = deps.principal()
        with tool_errors():
            data, nxt, complete = await app.read_logs(run_id, principal, stream, offset, limit)
            return LogRead(
                run_id=run_id,
                stream=stream.value,
                offset=offset,
                next_offset=nxt,
                data=data.decode("utf-8", errors="replace"),
                still_writing=not complete,
            )

    @server.tool(description="List the files a run saved as artifacts (name, size, sha256).")
    async def list_artifacts(run_id: RunId) -> ArtifactList:
        principal = deps.principal()
        with tool_errors():
            found = await app.artifacts(run_id, principal)
            return ArtifactList(run_id=run_id, artifacts=[ArtifactInfo.of(a) for a in found])

    @server.tool(
        description="Read one artifact of a run: text comes back as text, other files as a blob."
    )
    async def read_artifact(
        run_id: RunId,
        name: Annotated[str, Field(description="the artifact's name, from list_artifacts")],
        max_bytes: Annotated[int, Field(ge=1, le=MAX_ARTIFACT_READ)] = 1024 * 1024,
    ) -> Annotated[types.CallToolResult, ArtifactRead]:
        principal = deps.principal()
        with tool_errors():
            artifact, path = await app.artifact_path(run_id, name, principal)
        data = await anyio.to_thread.run_sync(_read_head, path, max_bytes)
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

    @server.tool(description="Run a finished (or any) run again with the same spec; new run id.")
    async def rerun(run_id: RunId) -> SubmitResult:
        principal = deps.principal()
        with tool_errors():
            run = await app.rerun(run_id, principal)
            deps.on_run_touched(run, principal)
            return SubmitResult(run_id=run.id, status=run.status.value, created=True)


def _read_head(path: Path, limit: int) -> bytes:
    with path.open("rb") as f:
        return f.read(limit)


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
