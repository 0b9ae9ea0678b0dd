"""``GET /api/v1/events``: the durable event log as Server-Sent Events (issue 17).

Each event is one SSE message: ``id:`` (the event id), ``event:`` (its type, e.g.
``run.finished``) and ``data:`` (the event as JSON). A client that reconnects sends the last id
it saw as ``Last-Event-ID`` (browsers' EventSource does this by itself) or ``?after=``, and gets
every later event, none twice and none skipped; without either it gets only what happens from
now on; ``?after=0`` replays every event still kept. Events pruned from the log (its retention)
cannot be replayed: the answer is ``410 events_expired`` before the stream starts, or an
``error`` message and the end of the stream if a slow reader falls behind the pruning. The first
message is ``open`` with the id the stream starts after (so that a reconnect before any event
still resumes from there). Comments (``: ping``) every 15 s keep proxies from closing an idle
stream. ``?limit=`` and ``?timeout=`` end the stream after that many events or seconds (scripts,
tests, the fuzzer). ``?format=json`` answers one page instead (``{events, next_after}``): what
is kept now, no wait.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from sse_starlette.sse import EventSourceResponse

from mcpexec.api.deps import AppDep, PrincipalDep
from mcpexec.api.errors import SafeJSONResponse
from mcpexec.app import App, Principal
from mcpexec.errors import InvalidRequest, McpexecError
from mcpexec.event_ops import MAX_READ, event_json

router = APIRouter(prefix="/api/v1/events", tags=["events"])

MAX_ID = 2**53 - 1
PING_S = 15


async def event_stream(
    app: App,
    principal: Principal,
    after: int,
    *,
    type_prefix: str | None,
    subject: str | None,
    limit: int | None,
    timeout_s: float | None,
) -> AsyncIterator[dict[str, str]]:
    """The SSE messages of the caller's events after ``after``: ``open`` first (its id the
    start), then one per event, ``error`` if the reader falls behind the pruning, ``shutdown``
    when the server stops."""
    # A client that reconnects before any event came sends the open's id as Last-Event-ID and
    # misses nothing that happened meanwhile.
    yield {"id": str(after), "event": "open", "data": json.dumps({"after": after})}
    batches = app.event_log.follow(
        principal,
        after,
        type_prefix=type_prefix,
        subject=subject,
        limit=limit,
        timeout_s=timeout_s,
    )
    try:
        async for batch in batches:
            for event in batch.events:
                data = json.dumps(event_json(event))
                yield {"id": str(event.id), "event": event.type, "data": data}
            after = batch.through
    except McpexecError as exc:  # e.g. events_expired: the reader fell behind the pruning
        yield {"event": "error", "data": json.dumps(exc.to_dict())}
        return
    if app.shutting_down:
        yield {"event": "shutdown", "data": json.dumps({"after": after})}


@router.get("", summary="Events of runs, schedules and workflows, live (Server-Sent Events)")
async def events(
    app: AppDep,
    principal: PrincipalDep,
    after: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_ID,
            description="replay the events after this id (0: all kept); default: from now on",
        ),
    ] = None,
    type: Annotated[
        str | None,
        Query(
            max_length=200,
            pattern="^[a-z_.]*$",
            description="only events whose type starts with this (run., run.finished, ...)",
        ),
    ] = None,
    subject: Annotated[
        str | None,
        Query(max_length=200, description="only events of this run, schedule or workflow run"),
    ] = None,
    limit: Annotated[
        int | None, Query(ge=1, le=100_000, description="end the stream after this many events")
    ] = None,
    timeout: Annotated[
        float | None, Query(gt=0, le=86400, description="end the stream after this many seconds")
    ] = None,
    format: Annotated[
        str,
        Query(
            pattern="^(sse|json)$",
            description="json: one page of the events kept now (limit, default 100, at most "
            "1000), {events, next_after}; no waiting",
        ),
    ] = "sse",
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            pattern="^[0-9]{1,15}$",
            description="the last id received (a reconnecting EventSource sends it); wins "
            "over ?after=",
        ),
    ] = None,
) -> Response:
    resume = int(last_event_id) if last_event_id is not None else after
    start = await app.event_log.start(principal, resume)  # 410 before the stream starts
    if format == "json":
        if limit is not None and limit > MAX_READ:
            raise InvalidRequest(f"limit is at most {MAX_READ} with format=json", field="limit")
        batch = await app.event_log.read(
            principal, start, type_prefix=type, subject=subject, limit=limit or 100
        )
        body = {"events": [event_json(e) for e in batch.events], "next_after": batch.through}
        return SafeJSONResponse(body)
    # Refused before the stream starts, too: a role that may not read runs.
    await app.event_log.read(principal, start, limit=1)
    stream = event_stream(
        app,
        principal,
        start,
        type_prefix=type,
        subject=subject,
        limit=limit,
        timeout_s=timeout,
    )
    return EventSourceResponse(stream, ping=PING_S, shutdown_grace_period=2.0)
