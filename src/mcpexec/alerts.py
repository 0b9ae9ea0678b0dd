"""Alerts (issue 17): the rules of the ``alerts`` setting evaluated in-process, once per store.

Every process that runs background duties (``serve``, ``worker``) has the loop, but a round
runs only in the process holding the store lease ``mcpexec.alerts`` (``Store.take_lease``,
renewed every round, three rounds long): when several processes share a store one evaluates,
and another takes over when it stops. A round reads the store's figures
(``Store.alert_figures``, the workers, the schedules), asks each rule which subjects fire now
(``alert_rules``), and compares with the stored states: a subject that starts firing is
recorded ``firing``, one that stops is recorded ``resolved``, each change in one transaction
with its event (``alert.firing`` / ``alert.resolved`` in the event log) and, when the rule names
a webhook, its durable delivery (``webhooks.py``). Nothing is written while nothing changes.
Every change is also logged (``ALERT firing …`` at warning, ``ALERT resolved …`` at info).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import socket
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from mcpexec import alert_rules as rules_
from mcpexec.alert_rules import AlertRule, Finding, RunningRun
from mcpexec.errors import WebhookRefused
from mcpexec.models import utcnow
from mcpexec.store.base import AlertFigures, AlertRecord, NewDelivery

if TYPE_CHECKING:
    from mcpexec.app import App, Principal

log = logging.getLogger(__name__)

LEASE = "mcpexec.alerts"


def degradations(isolation: str) -> list[str]:
    """What an attempt's recorded isolation says it ran without."""
    found = []
    if isolation.startswith("none"):
        found.append("no sandbox")
    if "NO-seccomp" in isolation:
        found.append("no seccomp filter")
    if "memory=rlimit" in isolation:
        found.append("no memory cgroup")
    if "pids=rlimit" in isolation:
        found.append("no pids cgroup")
    return found


def alert_view(alert: AlertRecord) -> dict[str, Any]:
    """An alert as REST, the CLI and the dashboard show it."""

    def iso(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat().replace("+00:00", "Z")

    return {
        "rule": alert.rule,
        "subject": alert.subject,
        "tenant": alert.tenant,
        "state": alert.state,
        "value": alert.value,
        "message": alert.message,
        "fired_at": iso(alert.fired_at),
        "resolved_at": iso(alert.resolved_at),
        "updated_at": iso(alert.updated_at),
    }


class AlertOps:
    """``App.alerts``: the evaluation loop and the list the API, CLI and dashboard show."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.rules: list[AlertRule] = list(app.settings.alerts)
        self.interval_s = app.settings.alert_interval_s
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._missed_seen: dict[str, dict[str, tuple[int, datetime | None]]] = {}
        self._lock = asyncio.Lock()

    async def list_alerts(self, principal: Principal) -> list[dict[str, Any]]:
        """Alert states, firing first: every tenant's for an admin, else the caller's
        tenant's (alerts about the whole server, with no tenant, are for admins)."""
        tenant = None if principal.is_admin else principal.tenant
        return [alert_view(a) for a in await self.app.store.list_alerts(tenant)]

    async def check_webhooks(self) -> None:
        """Say at start which rule's webhook delivery would refuse (it is checked again, and
        refused for good, at each delivery)."""
        for rule in self.rules:
            if rule.webhook is None:
                continue
            try:
                await self.app.webhooks.check(rule.webhook, field=f"alerts.{rule.name}.webhook")
            except WebhookRefused as exc:
                log.error("alert rule %s: its webhook will not be delivered: %s", rule.name, exc)

    async def run_forever(self) -> None:
        await self.check_webhooks()
        if not self.rules:
            if await self.app.store.list_alerts():  # rules removed: resolve what still fires
                await self.evaluate()
            return
        while True:
            try:
                await self.evaluate()
            except Exception:  # a store hiccup: the next round tries again
                log.exception("alerts: evaluation failed")
            await asyncio.sleep(self.interval_s)

    async def evaluate(self, now: datetime | None = None) -> list[AlertRecord] | None:
        """One round; the changes recorded, or ``None`` when another process holds the lease."""
        async with self._lock:
            now = now or utcnow()
            until = now + timedelta(seconds=max(3 * self.interval_s, 1.0))
            if not await self.app.store.take_lease(LEASE, self.holder, now, until):
                return None
            current = {(a.rule, a.subject): a for a in await self.app.store.list_alerts()}
            figures: dict[float, AlertFigures] = {}
            changes: list[tuple[AlertRule | None, AlertRecord]] = []
            for rule in self.rules:
                found = {f.subject: f for f in await self._findings(rule, now, figures)}
                for subject, finding in found.items():
                    old = current.get((rule.name, subject))
                    if old is None or old.state != "firing":
                        record = AlertRecord(
                            rule=rule.name,
                            subject=subject,
                            tenant=finding.tenant,
                            state="firing",
                            value=finding.value,
                            message=finding.message,
                            fired_at=now,
                            updated_at=now,
                        )
                        changes.append((rule, record))
                for (name, subject), old in current.items():
                    if name == rule.name and old.state == "firing" and subject not in found:
                        changes.append((rule, _resolved(old, now)))
            configured = {r.name for r in self.rules}
            for (name, _), old in current.items():
                if name not in configured and old.state == "firing":
                    changes.append((None, _resolved(old, now, "the rule is no longer configured")))
            for changed_rule, record in changes:
                await self._record(changed_rule, record, now)
            return [record for _, record in changes]

    async def _record(self, rule: AlertRule | None, record: AlertRecord, now: datetime) -> None:
        deliveries = []
        if rule is not None and rule.webhook is not None:
            body = {"type": f"alert.{record.state}", "kind": rule.kind, **alert_view(record)}
            deliveries.append(
                NewDelivery(
                    tenant=record.tenant or "",
                    url=rule.webhook,
                    event=f"alert.{record.state}",
                    subject=f"{record.rule}/{record.subject}" if record.subject else record.rule,
                    body=json.dumps(body),
                    created_at=now,
                )
            )
        await self.app.store.record_alert(record, deliveries)
        level = logging.WARNING if record.state == "firing" else logging.INFO
        log.log(level, "ALERT %s %s: %s", record.state, record.rule, record.message)
        self.app.events.log_changed()
        if deliveries:
            self.app.webhooks.wake()

    async def _figures(
        self, since_s: float, now: datetime, cache: dict[float, AlertFigures]
    ) -> AlertFigures:
        if since_s not in cache:
            since = now - timedelta(seconds=since_s)
            cache[since_s] = await self.app.store.alert_figures(since, now)
        return cache[since_s]

    async def _findings(
        self, rule: AlertRule, now: datetime, cache: dict[float, AlertFigures]
    ) -> list[Finding]:
        store = self.app.store
        found: list[Finding]
        if rule.kind == "failure_rate":
            figures = await self._figures(rule.window_s, now, cache)
            counts: dict[tuple[str, str], tuple[int, int]] = {}
            for (tenant, task), (completed, failed) in figures.finished.items():
                if rule.by == "task" and not task:
                    continue
                key = (tenant, task if rule.by == "task" else "")
                done, bad = counts.get(key, (0, 0))
                counts[key] = (done + completed, bad + failed)
            found = rules_.failure_rate(rule, counts)
        elif rule.kind == "queue_age":
            figures = await self._figures(rule.window_s, now, cache)
            found = rules_.queue_age(rule, figures.oldest_due, now)
        elif rule.kind == "run_overdue":
            figures = await self._figures(rule.window_s, now, cache)
            running = [RunningRun(*r) for r in figures.running]
            found = rules_.run_overdue(rule, running, now)
        elif rule.kind == "no_worker":
            within = 2 * self.app.settings.lease_s
            workers = await store.list_workers()
            alive = [w for w in workers if (now - w.heartbeat_at).total_seconds() <= within]
            return rules_.no_worker(len(alive))
        elif rule.kind == "schedule_missed":
            missed = {s.id: (s.tenant, s.missed_count) for s in await store.list_schedules(None)}
            seen = self._missed_seen.get(rule.name, {})
            found, self._missed_seen[rule.name] = rules_.schedule_missed(rule, missed, seen, now)
        else:  # sandbox_degraded
            figures = await self._figures(rule.window_s, now, cache)
            why: dict[str, int] = {}
            for isolation, count in figures.isolations.items():
                for what in degradations(isolation):
                    why[what] = why.get(what, 0) + count
            return rules_.sandbox_degraded(rule, why)
        if rule.tenant is not None:
            found = [f for f in found if f.tenant == rule.tenant]
        return found


def _resolved(old: AlertRecord, now: datetime, why: str | None = None) -> AlertRecord:
    message = f"resolved ({why})" if why else f"resolved: {old.message}"
    return dataclasses.replace(
        old, state="resolved", resolved_at=now, updated_at=now, message=message
    )
