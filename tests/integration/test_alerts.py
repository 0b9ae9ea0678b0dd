"""Alert rules on a real App (issue 17): a failing task crosses the failure-rate threshold → the
alert fires once (one signed webhook delivery to a real local receiver, an ``alert.firing``
event, the log), stays firing without a second delivery, then resolves when the task recovers
(one more delivery). Evaluation takes the store lease: a second evaluator on the same store
does nothing while the first holds it."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mcpexec.alert_rules import AlertRule
from mcpexec.alerts import AlertOps
from mcpexec.app import App
from mcpexec.models import RunRequest, utcnow
from mcpexec.store.base import EventQuery
from mcpexec.webhooks import SIGNATURE_HEADER, verify

from .task_app import ADMIN, ALICE, real_app, task, until
from .webhook_receiver import Receiver

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

SECRET = "alert-secret"


async def run_task(app: App, name: str, times: int, status: str) -> None:
    ids = []
    for _ in range(times):
        run, _ = await app.submit(RunRequest(task=name), ADMIN)
        ids.append(run.id)
    for run_id in ids:
        await until(app, run_id, status)


@pytest.fixture(params=["sqlite", "postgres"])
def store_settings(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """The App's store: the SQLite file under its home, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield {}
        return
    from pg_server import fresh_schema

    with fresh_schema() as url:
        yield {"database_url": url}


async def test_a_failing_task_fires_once_then_resolves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, store_settings: dict[str, Any]
) -> None:
    receiver = Receiver(0).start()
    rule = AlertRule(
        name="flaky-tasks",
        kind="failure_rate",
        by="task",
        threshold=0.5,
        min_runs=2,
        window_s=600,
        webhook=receiver.url,
    )
    settings = {
        "alerts": [rule],
        "alert_interval_s": 3600.0,  # the loop's first round finds nothing; the test drives
        "webhook_secret": SECRET,
        "webhook_allow": ["*", "127.0.0.1"],
        **store_settings,
    }
    caplog.set_level(logging.INFO, logger="mcpexec.alerts")
    try:
        async with real_app(tmp_path, **settings) as app:
            await app.tasks.define(task("shell: exit 1\n", name="nightly"), ADMIN)
            await run_task(app, "nightly", 3, "failed")
            [firing] = await app.alerts.evaluate() or []
            assert (firing.rule, firing.subject, firing.state) == (
                "flaky-tasks",
                "default/nightly",
                "firing",
            )
            assert firing.value == 1.0
            assert "3 of 3 runs of task nightly" in firing.message
            assert await app.alerts.evaluate() == []  # still firing: nothing new
            [hit] = await asyncio.to_thread(receiver.wait_for, 1)
            assert verify(SECRET, hit.headers[SIGNATURE_HEADER], hit.body)
            body = json.loads(hit.body)
            assert (body["type"], body["rule"], body["state"], body["kind"]) == (
                "alert.firing",
                "flaky-tasks",
                "firing",
                "failure_rate",
            )
            # Another process on the same store: the lease is held, it evaluates nothing.
            assert await AlertOps(app).evaluate() is None
            # The task recovers: 3 failed of 7 is under the threshold.
            await app.tasks.define(task("shell: exit 0\n", name="nightly"), ADMIN)
            await run_task(app, "nightly", 4, "completed")
            [resolved] = await app.alerts.evaluate() or []
            assert (resolved.state, resolved.subject) == ("resolved", "default/nightly")
            assert resolved.fired_at == firing.fired_at
            assert resolved.resolved_at is not None
            hits = await asyncio.to_thread(receiver.wait_for, 2)
            assert [json.loads(h.body)["state"] for h in hits] == ["firing", "resolved"]
            assert await app.alerts.evaluate() == []
            listed = await app.alerts.list_alerts(ADMIN)
            assert [(a["rule"], a["state"]) for a in listed] == [("flaky-tasks", "resolved")]
            assert await app.alerts.list_alerts(ALICE) == []  # another tenant's alert
            events = await app.store.read_events(EventQuery(type_prefix="alert.", limit=10))
            assert [e.type for e in events.events] == ["alert.firing", "alert.resolved"]
    finally:
        receiver.stop()
    assert len(receiver.received) == 2  # one delivery each, none repeated
    messages = [r.getMessage() for r in caplog.records if r.name == "mcpexec.alerts"]
    assert any(m.startswith("ALERT firing flaky-tasks") for m in messages)
    assert any(m.startswith("ALERT resolved flaky-tasks") for m in messages)


async def test_a_stuck_queue_without_workers_fires_and_a_removed_rule_resolves(
    tmp_path: Path,
) -> None:
    rules = [
        AlertRule(name="no-workers", kind="no_worker"),
        AlertRule(name="queue-stuck", kind="queue_age", age_s=5),
    ]
    async with real_app(tmp_path, workers=0, alerts=rules, alert_interval_s=3600.0) as app:
        await app.submit(RunRequest(shell="true"), ADMIN)
        later = utcnow() + timedelta(seconds=10)
        await app.alerts.evaluate(later)  # (the loop's first round may have fired no-workers)
        listed = await app.alerts.list_alerts(ADMIN)
        assert sorted((a["rule"], a["subject"], a["state"], a["tenant"]) for a in listed) == [
            ("no-workers", "", "firing", None),
            ("queue-stuck", "default", "firing", "default"),
        ]
        # The rules leave the config (another process, started with another config): it waits
        # for the lease to expire (three rounds), takes it over, and resolves them.
        emptied = AlertOps(app)
        emptied.rules = []
        assert await emptied.evaluate(later + timedelta(seconds=60)) is None
        resolved = await emptied.evaluate(later + timedelta(hours=4)) or []
        assert sorted((a.rule, a.state) for a in resolved) == [
            ("no-workers", "resolved"),
            ("queue-stuck", "resolved"),
        ]
        assert all("no longer configured" in a.message for a in resolved)
