"""The event stream of the dashboard (issue 17): ``/ui/events``, Server-Sent Events of the
signed-in principal's events (the same scope as ``GET /api/v1/events``), authenticated by the
session cookie, so that a page's ``EventSource`` (same origin, allowed by the CSP's
``connect-src 'self'``) updates it live. A reconnecting ``EventSource`` sends
``Last-Event-ID`` by itself and misses nothing. No page of its own: no ``NAV``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from sse_starlette.sse import EventSourceResponse
from starlette.responses import Response

from mcpexec.dashboard.page import Get, View
from mcpexec.errors import InvalidRequest, McpexecError

PING_S = 15


async def _messages(
    view: View, after: int, type_prefix: str | None
) -> AsyncIterator[dict[str, str]]:
    yield {"id": str(after), "event": "open", "data": json.dumps({"after": after})}
    try:
        async for batch in view.app.event_log.follow(
            view.principal, after, type_prefix=type_prefix
        ):
            for event in batch.events:
                # The type and the subject only: the page re-reads what it shows from the server.
                data = json.dumps({"type": event.type, "subject": event.subject})
                yield {"id": str(event.id), "event": event.type, "data": data}
    except McpexecError as exc:
        yield {"event": "error", "data": json.dumps({"code": exc.code})}


async def events(view: View) -> Response:
    raw = view.request.headers.get("last-event-id")
    if raw is not None and not (raw.isdigit() and len(raw) <= 15):
        raise InvalidRequest("Last-Event-ID is an event id")
    type_prefix = view.request.query_params.get("type") or None
    if type_prefix is not None and len(type_prefix) > 200:
        raise InvalidRequest("type is at most 200 characters")
    after = await view.app.event_log.start(view.principal, int(raw) if raw else None)
    return EventSourceResponse(
        _messages(view, after, type_prefix),
        ping=PING_S,
        shutdown_grace_period=2.0,
        headers={"Cache-Control": "no-store"},
    )


ROUTES = [Get("/events", events)]
