"""Webhook deliveries, alert states and leases (issue 17, migration 0012) on every store: a run's
end queues its notification (only for the statuses it asks), claims lease and fence deliveries,
alerts are upserted with their deliveries and events, a lease has one holder at a time."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from mcpexec.models import Notify
from mcpexec.store.base import AlertRecord, EventQuery, NewDelivery, Store

from .contract_helpers import OK, T0, claim_one, failed, new_run, t

pytestmark = pytest.mark.anyio

NOW = datetime.now(UTC)  # a run's delivery is due at the database clock's now


def notify(*on: str) -> Notify:
    return Notify(webhook="https://hooks.example.com/x", on=list(on))  # type: ignore[arg-type]


async def test_a_run_end_queues_its_webhook(store: Store) -> None:
    run, _ = await store.enqueue(dataclasses.replace(new_run("r1"), notify=notify("completed")))
    assert run.notify == notify("completed")
    assert (await store.get_run("r1")) == run
    await store.enqueue(dataclasses.replace(new_run("r2"), notify=notify("completed")))
    await store.enqueue(new_run("r3"))  # no notify: nothing queued
    for _ in range(3):
        claim = await claim_one(store, "w1", t(0))
        outcome = failed() if claim.run.id == "r2" else OK
        await store.finish_attempt(claim.run.id, claim.attempt, "w1", outcome, t(1), retry_at=None)
    found = await store.list_deliveries()
    assert [(d.subject, d.event, d.url, d.body, d.status) for d in found] == [
        ("r1", "run.completed", "https://hooks.example.com/x", None, "pending")
    ]
    assert await store.list_deliveries(subject="r2") == []
    assert await store.next_delivery_at() is not None


async def test_claims_lease_and_fence_deliveries(store: Store) -> None:
    await store.enqueue(dataclasses.replace(new_run("r1"), notify=notify("completed", "failed")))
    claim = await claim_one(store, "w1", T0)
    await store.finish_attempt("r1", claim.attempt, "w1", failed(), t(1), retry_at=None)
    later = datetime.now(UTC) + timedelta(seconds=5)
    [taken] = await store.claim_deliveries(later, later + timedelta(seconds=30))
    assert (taken.event, taken.attempts, taken.subject) == ("run.failed", 1, "r1")
    assert await store.claim_deliveries(later, later + timedelta(seconds=30)) == []  # leased
    # The lease expires: taken again (attempt 2); the first taker's late report is refused.
    again = later + timedelta(seconds=31)
    [retaken] = await store.claim_deliveries(again, again + timedelta(seconds=30))
    assert retaken.attempts == 2
    assert not await store.finish_delivery(taken.id, 1, again, delivered=True)
    retry_at = again + timedelta(seconds=10)
    assert await store.finish_delivery(
        taken.id, 2, again, delivered=False, error="503", next_at=retry_at
    )
    assert await store.next_delivery_at() == retry_at
    [third] = await store.claim_deliveries(retry_at, retry_at + timedelta(seconds=30))
    assert await store.finish_delivery(third.id, 3, retry_at, delivered=True)
    [done] = await store.list_deliveries(subject="r1")
    assert (done.status, done.attempts, done.delivered_at, done.last_error) == (
        "delivered",
        3,
        retry_at,
        None,
    )
    assert await store.next_delivery_at() is None


async def test_a_delivery_that_gives_up_is_failed(store: Store) -> None:
    alert = AlertRecord(rule="r", subject="", state="firing", fired_at=T0, updated_at=T0)
    new = NewDelivery("default", "https://h.example.com/", "alert.firing", "r", "{}", T0)
    await store.record_alert(alert, [new])
    [taken] = await store.claim_deliveries(t(1), t(31))
    assert taken.body == "{}"
    assert await store.finish_delivery(taken.id, 1, t(1), delivered=False, error="refused")
    [done] = await store.list_deliveries()
    assert (done.status, done.last_error, done.next_at) == ("failed", "refused", None)


async def test_alerts_are_upserted_with_events(store: Store) -> None:
    firing = AlertRecord(
        rule="failure_rate",
        subject="acme",
        tenant="acme",
        state="firing",
        value=0.75,
        message="75% failed",
        fired_at=T0,
        updated_at=T0,
    )
    await store.record_alert(firing, [])
    other = AlertRecord(
        rule="no_worker", subject="", state="firing", fired_at=t(1), updated_at=t(1)
    )
    await store.record_alert(other, [])
    resolved = dataclasses.replace(firing, state="resolved", resolved_at=t(2), updated_at=t(2))
    await store.record_alert(resolved, [])
    assert await store.list_alerts() == [other, resolved]
    assert await store.list_alerts("acme") == [resolved]
    events = (await store.read_events(EventQuery(type_prefix="alert.", limit=10))).events
    assert [(e.type, e.subject, e.tenant) for e in events] == [
        ("alert.firing", "failure_rate/acme", "acme"),
        ("alert.firing", "no_worker", ""),
        ("alert.resolved", "failure_rate/acme", "acme"),
    ]
    assert events[0].data["value"] == 0.75


async def test_a_lease_has_one_holder(store: Store) -> None:
    assert await store.take_lease("alerts", "a", T0, t(10))
    assert not await store.take_lease("alerts", "b", t(5), t(15))
    assert await store.take_lease("alerts", "a", t(5), t(15))  # renewed by its holder
    assert not await store.take_lease("alerts", "b", t(14), t(24))
    assert await store.take_lease("alerts", "b", t(15), t(25))  # expired: taken over
    assert await store.take_lease("other", "a", t(15), t(25))


async def test_alert_figures(store: Store) -> None:
    task_run = dataclasses.replace(new_run("t1"), task="report", estimated_duration_ms=1500)
    await store.enqueue(task_run)
    await store.enqueue(new_run("a1", tenant="acme"))
    await store.enqueue(new_run("a2", tenant="acme"))
    await store.enqueue(new_run("late", tenant="acme", run_at=t(3600)))  # not due
    await store.enqueue(new_run("d1", created_at=t(1)))
    claims = await store.claim("w1", 3, t(2), t(32))
    assert {c.run.id for c in claims} == {"t1", "a1", "a2"}
    bare = dataclasses.replace(failed(), isolation="none (no sandbox)")
    await store.finish_attempt("a1", 1, "w1", bare, t(3), retry_at=None)
    ok = dataclasses.replace(OK, isolation="bwrap(default) NO-seccomp")
    await store.finish_attempt("a2", 1, "w1", ok, t(4), retry_at=None)
    figures = await store.alert_figures(t(0), t(10))
    assert figures.finished == {("acme", ""): (1, 1)}
    assert figures.oldest_due == {"default": t(1)}
    assert figures.running == [("t1", "default", "report", t(2), 1500)]
    assert figures.isolations == {"none (no sandbox)": 1, "bwrap(default) NO-seccomp": 1}
    later = await store.alert_figures(t(5), t(10))
    assert (later.finished, later.isolations) == ({}, {})


async def test_finished_deliveries_are_pruned(store: Store) -> None:
    alert = AlertRecord(rule="r", subject="", state="firing", fired_at=T0, updated_at=T0)
    for at in (T0, t(10), t(20)):
        new = NewDelivery("default", "https://h.example.com/", "alert.firing", "r", "{}", at)
        await store.record_alert(alert, [new])
    first, second, _third = await store.claim_deliveries(t(30), t(60))
    await store.finish_delivery(first.id, 1, t(30), delivered=True)
    await store.finish_delivery(second.id, 1, t(30), delivered=False, error="gone")
    assert await store.prune_deliveries(t(5)) == 1  # the first; the second is newer
    assert await store.prune_deliveries(t(100)) == 1  # the second; the third is pending
    assert [d.status for d in await store.list_deliveries()] == ["pending"]
