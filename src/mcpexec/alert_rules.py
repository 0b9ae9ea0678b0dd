"""Alert rules (issue 17): what the config says, and what each rule decides from the figures the
evaluator (``alerts.py``) reads from the store. Pure: no I/O, times are given.

A rule yields the set of subjects it fires for now (``Finding``: subject, tenant, value,
message); the evaluator compares that with the stored states and records what changed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

RuleKind = Literal[
    "failure_rate", "queue_age", "no_worker", "run_overdue", "schedule_missed", "sandbox_degraded"
]


class AlertRule(BaseModel):
    """One rule of the ``alerts`` setting. Fields a kind does not use are ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: RuleKind
    #: failure_rate: the share of failed among finished (completed + failed) runs over
    #: ``window_s`` above ``threshold``, with at least ``min_runs`` finished, per ``by``.
    window_s: float = Field(default=300.0, gt=0)
    threshold: float = Field(default=0.5, ge=0, le=1)
    min_runs: int = Field(default=5, ge=1)
    by: Literal["tenant", "task"] = "tenant"
    #: Only this tenant's runs (failure_rate, queue_age, run_overdue); ``None``: every tenant.
    tenant: str | None = None
    #: queue_age: the oldest due pending run waited more than ``age_s``.
    age_s: float = Field(default=300.0, gt=0)
    #: run_overdue: a running task run past ``factor`` times its usual duration.
    factor: float = Field(default=3.0, gt=1)
    #: Where firing and resolved are POSTed besides the log (signed, retried).
    webhook: str | None = Field(default=None, min_length=8, max_length=2000)

    @field_validator("webhook")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.lower().startswith(("http://", "https://")):
            raise ValueError("webhook must be an http:// or https:// URL")
        return value


@dataclass(frozen=True, slots=True)
class Finding:
    """A subject a rule fires for now."""

    subject: str
    tenant: str | None
    value: float | None
    message: str


def failure_rate(
    rule: AlertRule, counts: Mapping[tuple[str, str], tuple[int, int]]
) -> list[Finding]:
    """``counts``: (tenant, task or "") → (completed, failed) finished in the window."""
    found = []
    for (tenant, task), (completed, failed) in sorted(counts.items()):
        finished = completed + failed
        if finished < rule.min_runs or finished == 0:
            continue
        rate = failed / finished
        if rate > rule.threshold:
            subject = tenant if rule.by == "tenant" else f"{tenant}/{task}"
            what = f"tenant {tenant}" if rule.by == "tenant" else f"task {task} of {tenant}"
            message = (
                f"{failed} of {finished} runs of {what} failed in the last "
                f"{rule.window_s:g} s ({rate:.0%} > {rule.threshold:.0%})"
            )
            found.append(Finding(subject, tenant, round(rate, 4), message))
    return found


def queue_age(rule: AlertRule, oldest: Mapping[str, datetime], now: datetime) -> list[Finding]:
    """``oldest``: tenant → when its oldest pending run became due."""
    found = []
    for tenant, since in sorted(oldest.items()):
        age = (now - since).total_seconds()
        if age > rule.age_s:
            message = f"the oldest pending run of {tenant} has waited {age:.0f} s"
            found.append(Finding(tenant, tenant, round(age, 3), message))
    return found


def no_worker(alive: int) -> list[Finding]:
    if alive > 0:
        return []
    return [Finding("", None, 0.0, "no live worker (no heartbeat within two leases)")]


@dataclass(frozen=True, slots=True)
class RunningRun:
    id: str
    tenant: str
    task: str | None
    started_at: datetime
    estimated_duration_ms: int | None


def run_overdue(rule: AlertRule, running: Iterable[RunningRun], now: datetime) -> list[Finding]:
    found = []
    for run in running:
        if run.estimated_duration_ms is None or run.estimated_duration_ms <= 0:
            continue
        usual = timedelta(milliseconds=run.estimated_duration_ms)
        took = now - run.started_at
        if took > usual * rule.factor:
            ratio = took / usual
            message = (
                f"run {run.id} of task {run.task} has run {took.total_seconds():.0f} s, "
                f"{ratio:.1f} times its usual {usual.total_seconds():.1f} s"
            )
            found.append(Finding(run.id, run.tenant, round(ratio, 3), message))
    return found


def schedule_missed(
    rule: AlertRule,
    missed: Mapping[str, tuple[str, int]],
    seen: Mapping[str, tuple[int, datetime | None]],
    now: datetime,
) -> tuple[list[Finding], dict[str, tuple[int, datetime | None]]]:
    """``missed``: schedule id → (tenant, missed fires counted so far); ``seen``: what the
    previous evaluation saw (count, when it last grew). A schedule fires while its count grew
    within ``window_s``; the first sight of a schedule is its baseline (old misses do not
    fire). Returns the findings and the new ``seen``."""
    found = []
    now_seen: dict[str, tuple[int, datetime | None]] = {}
    for schedule_id, (tenant, count) in sorted(missed.items()):
        previous = seen.get(schedule_id)
        if previous is None:
            now_seen[schedule_id] = (count, None)
            continue
        before, grew_at = previous
        if count > before:
            grew_at = now
        now_seen[schedule_id] = (count, grew_at)
        if grew_at is not None and (now - grew_at).total_seconds() < rule.window_s:
            message = f"schedule {schedule_id} of {tenant} missed fires ({count} in all)"
            found.append(Finding(schedule_id, tenant, float(count), message))
    return found, now_seen


def sandbox_degraded(rule: AlertRule, degraded: Mapping[str, int]) -> list[Finding]:
    """``degraded``: what runs went without (``no seccomp filter``, …) → how many runs."""
    return [
        Finding(
            what,
            None,
            float(count),
            f"sandbox degraded: {what} ({count} runs in the last {rule.window_s:g} s)",
        )
        for what, count in sorted(degraded.items())
    ]
