"""The durable event log as App operations (issue 17): read the events after an id, and wait
for new ones. ``GET /api/v1/events`` (SSE), ``mcpexec events`` and the dashboard's live runs
list read it through here; alert rules and webhooks may too.

Scope: the same rule as listing runs — a caller reads its own tenant's events; an admin reads
every tenant's. Waiting: the in-process ``EventHub`` wakes a reader at once on a change made in
this process; a bounded poll (``events_poll_s``) picks up the changes other processes made (a
separate ``mcpexec worker``, another server on the same PostgreSQL).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from mcpexec.errors import EventsExpired, InvalidRequest
from mcpexec.store.base import Event, EventBatch, EventQuery
from mcpexec.tenancy import Action, Scope, scope_of

if TYPE_CHECKING:
    from mcpexec.app import App, Principal

#: The most events one read returns.
MAX_READ = 1000
#: The longest type prefix and subject a filter may name.
MAX_FILTER = 200

__all__ = ["MAX_READ", "Event", "EventBatch", "EventOps", "event_json"]


#: Recent events kept in memory for live readers (``_Tail``).
TAIL_SIZE = 5000


class _Tail:
    """The newest events, read once for every live reader of this process: 100 streams woken
    by one change make one store read, not 100. Covers the ids ``(base, through]``; a reader
    further behind reads the store itself."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.base: int | None = None  # None: not read yet
        self.through = 0
        self.read_at = float("-inf")  # loop time the last store read began
        self.lock = asyncio.Lock()

    def covers(self, after: int) -> bool:
        return self.base is not None and self.base <= after <= self.through

    def add(self, batch: EventBatch) -> None:
        self.events.extend(batch.events)
        self.through = max(self.through, batch.through)
        if len(self.events) > TAIL_SIZE:
            dropped = self.events[: len(self.events) - TAIL_SIZE]
            self.events = self.events[len(dropped) :]
            self.base = dropped[-1].id

    def pick(self, query: EventQuery) -> EventBatch:
        found: list[Event] = []
        for event in self.events:  # at most TAIL_SIZE, newest last
            if event.id <= query.after or not _matches(event, query):
                continue
            found.append(event)
            if len(found) >= query.limit:
                return EventBatch(found, event.id)
        return EventBatch(found, max(self.through, query.after))


def _matches(event: Event, query: EventQuery) -> bool:
    return (
        (query.tenant is None or event.tenant == query.tenant)
        and (query.owner is None or event.owner == query.owner)
        and (query.type_prefix is None or event.type.startswith(query.type_prefix))
        and (query.subject is None or event.subject == query.subject)
    )


class EventOps:
    def __init__(self, app: App) -> None:
        self.app = app
        self._tail = _Tail()

    async def _live(self, query: EventQuery, since: float) -> EventBatch | None:
        """``read_events`` for a reader woken at loop time ``since``: from the shared tail,
        refreshed from the store unless a refresh began after ``since`` (it saw everything
        committed before the wake-up)."""
        tail = self._tail
        loop = asyncio.get_running_loop()
        async with tail.lock:
            if tail.read_at < since:
                tail.read_at = loop.time()
                if tail.base is None:
                    tail.base = tail.through = (await self.app.store.event_bounds())[1]
                else:
                    batch = await self.app.store.read_events(
                        EventQuery(after=tail.through, limit=MAX_READ)
                    )
                    tail.add(batch)
                    if len(batch.events) == MAX_READ:
                        tail.read_at = float("-inf")  # more to read: the next reader goes on
        return tail.pick(query) if tail.covers(query.after) else None

    def _scope(self, principal: Principal) -> tuple[str | None, str | None]:
        """The runs rule: an admin reads every tenant, others their tenant, and a role that
        reads only its own runs (a submitter) only the events of what it owns."""
        self.app.check_access(principal, Action.READ)
        tenant = None if principal.is_admin else principal.tenant
        own = scope_of(principal.role, Action.READ) is Scope.OWN
        return tenant, principal.id if own else None

    async def start(self, principal: Principal, after: int | None) -> int:
        """Where a reader starts: after ``after``, or after the newest event when ``None``
        (only what happens from now on). Raises ``EventsExpired`` when events after ``after``
        were pruned (``0``: every event still kept, never expired)."""
        del principal  # ids are global; what a reader sees is scoped in ``read``
        lo, hi = await self.app.store.event_bounds()
        if after is None:
            return hi
        if after < 0:
            raise InvalidRequest("an event id is >= 0", field="after")
        if 0 < after < lo - 1:
            raise EventsExpired(
                f"events after {after} were pruned (the oldest kept is {lo}): resume from now "
                "(no Last-Event-ID) or from ?after=0, and re-read the state you need",
                oldest=lo,
            )
        return after

    async def read(
        self,
        principal: Principal,
        after: int,
        *,
        type_prefix: str | None = None,
        subject: str | None = None,
        limit: int = 100,
    ) -> EventBatch:
        """The caller's events with ``id > after``, oldest first, at most ``limit``; the
        batch's ``through`` is where the next read continues."""
        await self.start(principal, after)  # pruned meanwhile: the reader must know
        return await self.app.store.read_events(
            self._query(principal, after, type_prefix, subject, limit)
        )

    def _query(
        self,
        principal: Principal,
        after: int,
        type_prefix: str | None,
        subject: str | None,
        limit: int,
    ) -> EventQuery:
        if not 1 <= limit <= MAX_READ:
            raise InvalidRequest(f"limit must be 1..{MAX_READ}", field="limit")
        tenant, owner = self._scope(principal)
        return EventQuery(
            after=after,
            tenant=tenant,
            owner=owner,
            type_prefix=type_prefix or None,
            subject=subject or None,
            limit=limit,
        )

    async def wait(
        self,
        principal: Principal,
        after: int,
        timeout_s: float,
        *,
        type_prefix: str | None = None,
        subject: str | None = None,
        limit: int = 100,
    ) -> EventBatch:
        """Like ``read``, but when nothing is there yet wait up to ``timeout_s`` for an event
        (an empty batch then; ``through`` may still have moved past others' events)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout_s)
        poll = self.app.settings.events_poll_s
        await self.start(principal, after)  # pruned already: the reader must know
        while True:
            since = loop.time()
            query = self._query(principal, after, type_prefix, subject, limit)
            live = await self._live(query, since)
            if live is None:  # behind the shared tail: from the store (pruned meanwhile?)
                await self.start(principal, after)
                live = await self.app.store.read_events(query)
            batch = live
            after = batch.through
            remaining = deadline - loop.time()
            if batch.events or remaining <= 0 or self.app.shutting_down:
                return EventBatch(batch.events, after)
            await self.app.events.wait_log(min(poll, remaining))

    async def follow(
        self,
        principal: Principal,
        after: int,
        *,
        type_prefix: str | None = None,
        subject: str | None = None,
        limit: int | None = None,
        timeout_s: float | None = None,
    ) -> AsyncIterator[EventBatch]:
        """Batches of the caller's events after ``after`` as they happen (an empty batch at
        least every ``WAIT_SLICE_S``, for keep-alives), until ``limit`` events, ``timeout_s``
        or this process shutting down; what every live surface streams."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        sent = 0
        while not self.app.shutting_down:
            slice_s = WAIT_SLICE_S
            if deadline is not None:
                slice_s = min(WAIT_SLICE_S, deadline - loop.time())
            if slice_s <= 0 or (limit is not None and sent >= limit):
                return
            want = 100 if limit is None else min(100, limit - sent)
            batch = await self.wait(
                principal, after, slice_s, type_prefix=type_prefix, subject=subject, limit=want
            )
            sent += len(batch.events)
            after = batch.through
            yield batch


#: How long one store wait of ``follow`` lasts at most (it re-checks its limits in between).
WAIT_SLICE_S = 15.0


def event_json(event: Event) -> dict[str, object]:
    """An event as every surface shows it (the SSE ``data``, ``mcpexec events --json``)."""
    return {
        "id": event.id,
        "at": event.at.isoformat().replace("+00:00", "Z"),
        "tenant": event.tenant,
        "type": event.type,
        "subject": event.subject,
        "data": event.data,
    }
