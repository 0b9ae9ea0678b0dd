"""``/api/v1/runs``: submit (202), list, get (long-poll), cancel, rerun, logs, artifacts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from sse_starlette.sse import EventSourceResponse

from mcpexec.api.deps import AppDep, PrincipalDep
from mcpexec.api.errors import SafeJSONResponse
from mcpexec.errors import InvalidRequest
from mcpexec.models import LogChunk, RunFilter, RunRequest, RunStatus, Stream, Timestamp
from mcpexec.views import artifact_view, attempt_view, byte_range, download_headers, run_view

router = APIRouter(prefix="/api/v1/runs", tags=["runs"])

MAX_LOG_READ = 4 * 1024 * 1024
#: Offsets (and cursors, at most 15 digits) stay within what a JSON number holds exactly
#: (2**53 - 1): far beyond any real log, and far from SQLite's 64-bit integers overflowing.
MAX_INT = 2**53 - 1


def _base(request: Request) -> str:
    """Links in answers: under ``MCPEXEC_PUBLIC_URL`` when set, else relative. Never built from
    the request's ``Host`` header, which the client controls."""
    public = request.app.state.mcpexec.settings.public_url
    return public.rstrip("/") if public else ""


@router.post("", status_code=202, summary="Submit a run (durably stored before the answer)")
async def submit_run(
    body: RunRequest,
    request: Request,
    app: AppDep,
    principal: PrincipalDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JSONResponse:
    if idempotency_key:
        body = body.model_copy(update={"idempotency_key": idempotency_key})
    run, created = await app.submit(body, principal)
    headers = {"Location": f"/api/v1/runs/{run.id}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return SafeJSONResponse(run_view(run, _base(request)), status_code=202, headers=headers)


def _parse_labels(labels: list[str]) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for item in labels:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidRequest(f"label filter {item!r} must look like key=value", field="label")
        parsed[key] = value
    return parsed


@router.get("", summary="List runs, newest first, with cursor paging")
async def list_runs(
    request: Request,
    app: AppDep,
    principal: PrincipalDep,
    status: Annotated[list[RunStatus] | None, Query()] = None,
    label: Annotated[
        list[str] | None,
        Query(
            description="key=value, repeatable",
            json_schema_extra={"items": {"type": "string", "pattern": "^[^=]+="}},
        ),
    ] = None,
    created_after: Timestamp | None = None,
    created_before: Timestamp | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None,
        Query(
            pattern=r"^[0-9]{1,19}(\.[0-9]{1,19})?$",
            description="next_cursor of the previous page (of the same filters)",
        ),
    ] = None,
    task: Annotated[str | None, Query(description="runs of this task")] = None,
    tool: Annotated[
        str | None, Query(max_length=300, description="tool runs of this tool: server.tool")
    ] = None,
) -> dict[str, Any]:
    filter = RunFilter(
        status=frozenset(status or ()),
        labels=_parse_labels(label or []),
        created_after=created_after,
        created_before=created_before,
        task=task,
        tool=tool,
    )
    page = await app.list_runs(principal, filter, limit, cursor)
    base = _base(request)
    return {"runs": [run_view(r, base) for r in page.runs], "next_cursor": page.next_cursor}


@router.get("/{run_id}", summary="Get a run; ?wait=S long-polls until it is terminal")
async def get_run(
    run_id: str,
    request: Request,
    app: AppDep,
    principal: PrincipalDep,
    wait: Annotated[float, Query(ge=0, le=300)] = 0,
) -> dict[str, Any]:
    run = await app.wait(run_id, principal, wait) if wait else await app.get(run_id, principal)
    return run_view(run, _base(request))


@router.delete("/{run_id}", status_code=202, summary="Request cancellation (idempotent)")
async def cancel_run(
    run_id: str, request: Request, app: AppDep, principal: PrincipalDep
) -> dict[str, Any]:
    return run_view(await app.cancel(run_id, principal), _base(request))


@router.post("/{run_id}/rerun", status_code=202, summary="Submit a new run with the same spec")
async def rerun(
    run_id: str, request: Request, app: AppDep, principal: PrincipalDep
) -> dict[str, Any]:
    return run_view(await app.rerun(run_id, principal), _base(request))


@router.get("/{run_id}/attempts", summary="The run's attempts, oldest first")
async def attempts(run_id: str, app: AppDep, principal: PrincipalDep) -> dict[str, Any]:
    return {"attempts": [attempt_view(a) for a in await app.attempts(run_id, principal)]}


def _sse_events(chunks: AsyncIterator[Any]) -> AsyncIterator[dict[str, str]]:
    async def events() -> AsyncIterator[dict[str, str]]:
        async for item in chunks:
            if isinstance(item, LogChunk):
                payload = {
                    "stream": item.stream.value,
                    "offset": item.offset,
                    "data": item.data.decode("utf-8", errors="replace"),
                }
                yield {"event": "output", "data": json.dumps(payload)}
            else:
                # Terminal: the end. Not terminal: the server is shutting down (the client
                # may follow again, from its offsets, once it is back).
                event = "end" if item.terminal else "shutdown"
                yield {"event": event, "data": json.dumps(run_view(item))}

    return events()


@router.get("/{run_id}/logs", summary="Read output by byte offset, or follow it live (SSE)")
async def logs(
    run_id: str,
    app: AppDep,
    principal: PrincipalDep,
    stream: Stream | None = None,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LOG_READ)] = 256 * 1024,
    follow: bool = False,
    format: Annotated[str, Query(pattern="^(json|raw)$")] = "json",
) -> Response:
    if follow:
        streams = (stream,) if stream else (Stream.STDOUT, Stream.STDERR)
        await app.get(run_id, principal)  # 404 before the stream starts
        offsets = dict.fromkeys(streams, offset)
        chunks = app.follow_logs(run_id, principal, streams, offsets)
        # The grace lets the stream send its `shutdown` event when sse-starlette notices the
        # exit before the App does (it would otherwise cut the stream at once).
        return EventSourceResponse(_sse_events(chunks), ping=15, shutdown_grace_period=2.0)
    chosen = stream or Stream.STDOUT
    data, next_offset, complete = await app.read_logs(run_id, principal, chosen, offset, limit)
    headers = {"X-Next-Offset": str(next_offset), "X-Complete": str(complete).lower()}
    if format == "raw":
        return Response(data, media_type="application/octet-stream", headers=headers)
    body = {
        "run_id": run_id,
        "stream": chosen.value,
        "offset": offset,
        "next_offset": next_offset,
        "data": data.decode("utf-8", errors="replace"),
        "complete": complete,
    }
    return SafeJSONResponse(body, headers=headers)


@router.get("/{run_id}/artifacts", summary="The run's artifacts")
async def artifacts(
    run_id: str, request: Request, app: AppDep, principal: PrincipalDep
) -> dict[str, Any]:
    items = await app.artifacts(run_id, principal)
    return {"artifacts": [artifact_view(a, _base(request)) for a in items]}


@router.get("/{run_id}/artifacts/{name:path}", summary="Download one artifact")
async def artifact(
    run_id: str,
    name: str,
    app: AppDep,
    principal: PrincipalDep,
    range_: Annotated[str | None, Header(alias="Range", include_in_schema=False)] = None,
) -> StreamingResponse:
    # One byte range (a resumed or partial download) is answered 206; several, or a malformed
    # one, get the whole artifact (RFC 9110 allows ignoring them); past the end is 416.
    # The whole artifact's stream starts only when iterated: a range asks once more, by offset.
    record, chunks = await app.artifact_bytes(run_id, name, principal)
    wanted = byte_range(range_, record.size)
    headers = {**download_headers(record), "X-Sha256": record.sha256, "Accept-Ranges": "bytes"}
    if wanted is None:
        return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)
    start, end = wanted
    _, chunks = await app.artifact_bytes(
        run_id, name, principal, offset=start, limit=end - start + 1
    )
    headers["Content-Length"] = str(end - start + 1)
    headers["Content-Range"] = f"bytes {start}-{end}/{record.size}"
    return StreamingResponse(
        chunks, status_code=206, media_type="application/octet-stream", headers=headers
    )
