"""The memory store's webhook deliveries, alert states and leases (issue 17): what migration
0012's tables and trigger do, in dicts. A run's notification is queued by ``run_changed``,
called from the run's change hook as the SQL dialects' trigger fires."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from mcpexec.models import Attempt, Run, RunStatus
from mcpexec.store._memory_events import event_log
from mcpexec.store.base import AlertFigures, AlertRecord, Delivery, NewDelivery


class HookState:
    def __init__(self) -> None:
        self.deliveries: dict[int, Delivery] = {}
        self.alerts: dict[tuple[str, str], AlertRecord] = {}
        self.leases: dict[str, tuple[str, datetime]] = {}
        self.last_id = 0

    def add(
        self,
        tenant: str,
        url: str,
        event: str,
        subject: str,
        body: str | None,
        now: datetime | None = None,
    ) -> None:
        self.last_id += 1
        now = now or datetime.now(UTC)
        self.deliveries[self.last_id] = Delivery(
            id=self.last_id,
            tenant=tenant,
            url=url,
            event=event,
            subject=subject,
            body=body,
            status="pending",
            attempts=0,
            created_at=now,
            next_at=now,
        )

    def run_changed(self, old: Run, new: Run) -> None:
        notify = new.notify
        if old.status != new.status and notify is not None and new.status.value in notify.on:
            self.add(new.tenant, notify.webhook, f"run.{new.status.value}", new.id, None)


def hook_state(owner: object) -> HookState:
    state = getattr(owner, "_hooks_state", None)
    if not isinstance(state, HookState):
        state = HookState()
        setattr(owner, "_hooks_state", state)  # noqa: B010 - set on whichever store owns it
    return state


class MemoryHooks:
    """Mixed into ``MemoryStore``."""

    @property
    def _hooks(self) -> HookState:
        return hook_state(self)

    async def claim_deliveries(
        self, now: datetime, lease_until: datetime, limit: int = 20
    ) -> list[Delivery]:
        due = sorted(
            (
                d
                for d in self._hooks.deliveries.values()
                if d.status == "pending" and d.next_at is not None and d.next_at <= now
            ),
            key=lambda d: (d.next_at, d.id),
        )[:limit]
        taken = []
        for d in due:
            claimed = dataclasses.replace(d, attempts=d.attempts + 1, next_at=lease_until)
            self._hooks.deliveries[d.id] = claimed
            taken.append(claimed)
        return sorted(taken, key=lambda d: d.id)

    async def finish_delivery(
        self,
        delivery_id: int,
        attempt: int,
        now: datetime,
        *,
        delivered: bool,
        error: str | None = None,
        next_at: datetime | None = None,
    ) -> bool:
        d = self._hooks.deliveries.get(delivery_id)
        if d is None or d.attempts != attempt or d.status != "pending":
            return False
        if delivered:
            done = dataclasses.replace(
                d, status="delivered", next_at=None, delivered_at=now, last_error=error
            )
        elif next_at is None:
            done = dataclasses.replace(d, status="failed", next_at=None, last_error=error)
        else:
            done = dataclasses.replace(d, next_at=next_at, last_error=error)
        self._hooks.deliveries[delivery_id] = done
        return True

    async def prune_deliveries(self, before: datetime, limit: int = 5000) -> int:
        old = sorted(
            d.id
            for d in self._hooks.deliveries.values()
            if d.status != "pending" and d.created_at < before
        )[:limit]
        for delivery_id in old:
            del self._hooks.deliveries[delivery_id]
        return len(old)

    async def next_delivery_at(self) -> datetime | None:
        due = [
            d.next_at
            for d in self._hooks.deliveries.values()
            if d.status == "pending" and d.next_at is not None
        ]
        return min(due, default=None)

    async def list_deliveries(
        self, subject: str | None = None, tenant: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        found = [
            d
            for d in sorted(self._hooks.deliveries.values(), key=lambda d: -d.id)
            if (subject is None or d.subject == subject) and (tenant is None or d.tenant == tenant)
        ]
        return found[:limit]

    async def record_alert(self, alert: AlertRecord, deliveries: list[NewDelivery]) -> None:
        self._hooks.alerts[(alert.rule, alert.subject)] = alert
        subject = f"{alert.rule}/{alert.subject}" if alert.subject else alert.rule
        data = {"rule": alert.rule, "state": alert.state, "value": alert.value}
        event_log(self).append(
            alert.tenant or "",
            None,
            f"alert.{alert.state}",
            subject,
            data | {"message": alert.message},
        )
        for new in deliveries:
            self._hooks.add(new.tenant, new.url, new.event, new.subject, new.body, new.created_at)

    async def list_alerts(self, tenant: str | None = None) -> list[AlertRecord]:
        found = [a for a in self._hooks.alerts.values() if tenant is None or a.tenant == tenant]
        found.sort(key=lambda a: a.rule)
        found.sort(key=lambda a: a.updated_at, reverse=True)
        found.sort(key=lambda a: a.state != "firing")
        return found

    async def alert_figures(self, since: datetime, now: datetime) -> AlertFigures:
        rows: dict[str, Any] = getattr(self, "_runs", {})
        attempts: dict[str, list[Attempt]] = getattr(self, "_attempts", {})
        counts: dict[tuple[str, str], tuple[int, int]] = {}
        oldest: dict[str, datetime] = {}
        running: list[tuple[str, str, str | None, datetime, int]] = []
        isolations: dict[str, int] = {}
        for row in rows.values():
            run: Run = row.run
            if run.status == RunStatus.PENDING and row.available_at <= now:
                due = oldest.get(run.tenant)
                oldest[run.tenant] = row.available_at if due is None else min(due, row.available_at)
            estimate, started = run.estimated_duration_ms, run.started_at
            if run.status == RunStatus.RUNNING and estimate is not None and started is not None:
                running.append((run.id, run.tenant, run.task, started, estimate))
            if run.finished_at is None or run.finished_at < since:
                continue
            if run.status in (RunStatus.COMPLETED, RunStatus.FAILED):
                key = (run.tenant, run.task or "")
                completed, failed = counts.get(key, (0, 0))
                if run.status == RunStatus.COMPLETED:
                    completed += 1
                else:
                    failed += 1
                counts[key] = (completed, failed)
            last = [a for a in attempts.get(run.id, []) if a.number == run.attempts]
            if last and last[0].isolation is not None:
                isolation = last[0].isolation
                isolations[isolation] = isolations.get(isolation, 0) + 1
        return AlertFigures(counts, oldest, running, isolations)

    async def take_lease(self, name: str, holder: str, now: datetime, until: datetime) -> bool:
        current = self._hooks.leases.get(name)
        if current is not None and current[0] != holder and current[1] > now:
            return False
        self._hooks.leases[name] = (holder, until)
        return True
