"""The memory store's event log (issue 17): the same events the SQL dialects' triggers write
(migration 0011), appended by the memory store's methods at each change."""

from __future__ import annotations

import dataclasses
from collections import deque
from datetime import UTC, datetime
from typing import Any

from mcpexec.models import Run, RunStatus
from mcpexec.store.base import Event, EventBatch, EventQuery


def run_event_type(old: RunStatus, new: RunStatus) -> str | None:
    """The event of a run's status change (``None``: no change), as the triggers decide."""
    if old == new:
        return None
    if new == RunStatus.RUNNING:
        return "run.started"
    if new == RunStatus.PENDING:
        return "run.retrying"
    return "run.finished"


def _run_data(run: Run, *, full: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"status": run.status.value, "attempt": run.attempts}
    if full:
        data["worker_id"] = run.worker_id
        data["exit_code"] = run.exit_code
        data["failure_kind"] = None if run.failure is None else run.failure.kind.value
    return data


class EventLog:
    """Events in id order; ids start at 1 and are never reused after a prune."""

    def __init__(self) -> None:
        self._events: deque[Event] = deque()
        self._last = 0

    def append(
        self, tenant: str, owner: str | None, type: str, subject: str, data: dict[str, Any]
    ) -> None:
        self._last += 1
        at = datetime.now(UTC)
        self._events.append(Event(self._last, at, tenant, type, subject, dict(data), owner))

    def mark(self) -> tuple[int, int]:
        """Where the log ends now, for ``truncate`` (a batch that is rolled back)."""
        return (len(self._events), self._last)

    def truncate(self, mark: tuple[int, int]) -> None:
        """Drop the events appended since ``mark`` (nobody read them: no await in between)."""
        length, last = mark
        while len(self._events) > length:
            self._events.pop()
        self._last = last

    def run_submitted(self, run: Run) -> None:
        data = _run_data(run, full=False) | {"task": run.task, "priority": run.priority}
        self.append(run.tenant, run.owner, "run.submitted", run.id, data)

    def run_changed(self, old: Run, new: Run) -> None:
        kind = run_event_type(old.status, new.status)
        if kind is not None:
            self.append(new.tenant, new.owner, kind, new.id, _run_data(new, full=True))
        elif new.cancel_requested and not old.cancel_requested and new.status == RunStatus.RUNNING:
            data = _run_data(new, full=False)
            self.append(new.tenant, new.owner, "run.cancel_requested", new.id, data)

    def read(self, query: EventQuery) -> EventBatch:
        found: list[Event] = []
        for event in self._events:
            if event.id <= query.after:
                continue
            if query.tenant is not None and event.tenant != query.tenant:
                continue
            if query.owner is not None and event.owner != query.owner:
                continue
            if query.type_prefix is not None and not event.type.startswith(query.type_prefix):
                continue
            if query.subject is not None and event.subject != query.subject:
                continue
            found.append(_copy(event))
            if len(found) >= query.limit:
                return EventBatch(found, found[-1].id)
        return EventBatch(found, max(self._last, query.after))

    def bounds(self) -> tuple[int, int]:
        if not self._events:
            return (0, 0)
        return (self._events[0].id, self._events[-1].id)

    def prune(self, keep: int, before: datetime, limit: int) -> int:
        removed = 0
        while len(self._events) > 1 and removed < limit:
            oldest = self._events[0]
            if len(self._events) <= keep and oldest.at >= before:
                break
            self._events.popleft()
            removed += 1
        return removed


def _copy(event: Event) -> Event:
    return dataclasses.replace(event, data=dict(event.data))


def event_log(owner: object) -> EventLog:
    """The store's log, created on first use (the mixins share it)."""
    log = getattr(owner, "_events_state", None)
    if not isinstance(log, EventLog):
        log = EventLog()
        setattr(owner, "_events_state", log)  # noqa: B010 - set on whichever store owns it
    return log


class MemoryEvents:
    """Mixed into ``MemoryStore``."""

    @property
    def _event_log(self) -> EventLog:
        return event_log(self)

    async def read_events(self, query: EventQuery) -> EventBatch:
        return self._event_log.read(query)

    async def event_bounds(self) -> tuple[int, int]:
        return self._event_log.bounds()

    async def prune_events(self, keep: int, before: datetime, limit: int = 5000) -> int:
        return self._event_log.prune(keep, before, limit)
