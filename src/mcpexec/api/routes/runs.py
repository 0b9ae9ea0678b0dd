"""``/api/v1/runs``: submit (202), list, get (long-poll), cancel, rerun, logs, artifacts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from sse_starlette.sse import EventSourceResponse

from mcpexec.api.deps import AppDep, PrincipalDep
from mcpexec.api.errors import SafeJSONResponse, error_details, invalid_request
from mcpexec.errors import InvalidRequest, McpexecError
from mcpexec.models import (
    BatchRequest,
    LogChunk,
    RunFilter,
    RunRequest,
    RunStatus,
    Stream,
    Timestamp,
)
from mcpexec.views import (
    RUN_FIELDS,
    artifact_view,
    attempt_view,
    byte_range,
    download_headers,
    run_brief,
    run_fields_view,
    run_view,
)

router = APIRouter(prefix="/api/v1/runs", tags=["runs"])

MAX_LOG_READ = 4 * 1024 * 1024
#: Offsets (and cursors, at most 15 digits) stay within what a JSON number holds exactly
#: (2**53 - 1): far beyond any real log, and far from SQLite's 64-bit integers overflowing.
MAX_INT = 2**53 - 1
#: The most ids one bulk status read names (``GET /api/v1/runs?ids=…``): one page of the list.
MAX_IDS = 500
_ID = "[A-Za-z0-9_.:-]{1,100}"
_FIELD = "(" + "|".join(RUN_FIELDS) + ")"


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
    # W3C Trace Context: the run continues the caller's trace (docs/observability.md).
    run, created = await app.submit(body, principal, traceparent=request.headers.get("traceparent"))
    headers = {"Location": f"/api/v1/runs/{run.id}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return SafeJSONResponse(run_view(run, _base(request)), status_code=202, headers=headers)


@router.post(
    ":batch",
    status_code=202,
    summary="Submit up to 1,000 runs in one durable transaction, with a result per item",
)
async def submit_batch(
    body: BatchRequest, request: Request, app: AppDep, principal: PrincipalDep
) -> JSONResponse:
    # Each item is validated alone: a bad one is its own result, the others go on.
    items: list[RunRequest | McpexecError] = []
    for item in body.runs:
        try:
            items.append(RunRequest.model_validate(item))
        except ValidationError as exc:
            items.append(invalid_request(exc.errors()))
    results = await app.batch.submit_many(
        items,
        principal,
        all_or_nothing=body.all_or_nothing,
        traceparent=request.headers.get("traceparent"),
    )
    base = _base(request)
    answers: list[dict[str, Any]] = []
    counts = {"created": 0, "replayed": 0, "failed": 0}
    for index, result in enumerate(results):
        if isinstance(result, McpexecError):
            counts["failed"] += 1
            details = error_details(result)
            error = {"code": result.code, "message": result.message, "details": details}
            answers.append({"index": index, "status": result.http_status, "error": error})
            continue
        run, created = result
        counts["created" if created else "replayed"] += 1
        view = run_brief(run, base)
        answers.append({"index": index, "status": 202, "created": created, "run": view})
    return SafeJSONResponse({"results": answers, **counts}, status_code=202)


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
            pattern=r"^([0-9]{1,17}\.)?[0-9]{1,15}$",
            description="next_cursor of the previous page (of the same filters)",
        ),
    ] = None,
    task: Annotated[str | None, Query(description="runs of this task")] = None,
    tenant: Annotated[
        str | None, Query(max_length=200, description="runs of this tenant (admin tokens)")
    ] = None,
    tool: Annotated[
        str | None, Query(max_length=300, description="tool runs of this tool: server.tool")
    ] = None,
    ids: Annotated[
        str | None,
        Query(
            pattern=f"^{_ID}(,{_ID}){{0,{MAX_IDS - 1}}}$",
            description=f"a bulk read: only these runs (comma-separated ids, at most {MAX_IDS}),"
            " all of them in one answer (limit does not cut it); ids that do not exist or that"
            " the token may not see are simply absent",
        ),
    ] = None,
    fields: Annotated[
        str | None,
        Query(
            pattern=f"^{_FIELD}(,{_FIELD})*$",
            description="answer only id and these fields of each run (comma-separated),"
            " e.g. status,exit_code",
        ),
    ] = None,
) -> dict[str, Any]:
    wanted = frozenset(ids.split(",")) if ids is not None else None
    filter = RunFilter(
        status=frozenset(status or ()),
        labels=_parse_labels(label or []),
        created_after=created_after,
        created_before=created_before,
        task=task,
        tool=tool,
        tenant=tenant,
        ids=wanted,
    )
    if wanted is not None:
        limit = len(wanted)
    page = await app.list_runs(principal, filter, limit, cursor)
    base = _base(request)
    if fields is not None:
        names = frozenset(fields.split(","))
        runs = [run_fields_view(r, names, base) for r in page.runs]
    else:
        runs = [run_view(r, base) for r in page.runs]
    return {"runs": runs, "next_cursor": page.next_cursor}


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
