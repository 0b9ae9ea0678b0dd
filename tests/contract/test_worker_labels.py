"""Contract: worker labels / routing (issue 13). A run asking for worker labels is claimed only
by a worker having all of them; a run asking for none by any worker."""

from __future__ import annotations

import dataclasses

import pytest

from mcpexec.store.base import ClaimLimits, NewRun, Store, WorkerInfo

from .contract_helpers import LEASE, T0, enqueue, new_run, t

pytestmark = pytest.mark.anyio


def routed(run_id: str, *labels: str, priority: int = 0) -> NewRun:
    return dataclasses.replace(new_run(run_id, priority=priority), worker_labels=labels)


def having(*labels: str) -> ClaimLimits:
    return ClaimLimits(worker_labels=frozenset(labels))


async def test_labels_are_stored_sorted_and_default_to_none(store: Store) -> None:
    run, _ = await store.enqueue(routed("gpu", "gpu", "cuda"))
    assert run.worker_labels == ["cuda", "gpu"]
    assert (await store.get_run("gpu")).worker_labels == ["cuda", "gpu"]  # type: ignore[union-attr]
    plain, _ = await store.enqueue(new_run("plain"))
    assert plain.worker_labels == []


async def test_a_worker_without_labels_takes_only_unlabelled_runs(store: Store) -> None:
    await enqueue(store, routed("gpu", "gpu", priority=10), new_run("plain"))
    claims = await store.claim("w1", 5, T0, T0 + LEASE)
    assert [c.run.id for c in claims] == ["plain"]
    assert await store.claim("w1", 5, T0, T0 + LEASE, ClaimLimits()) == []


async def test_a_labelled_worker_needs_every_label_and_also_takes_unlabelled_runs(
    store: Store,
) -> None:
    await enqueue(
        store,
        routed("both", "cuda", "gpu", priority=20),
        routed("gpu", "gpu", priority=10),
        new_run("plain"),
        routed("arm", "arm64"),
    )
    claims = await store.claim("w1", 5, T0, T0 + LEASE, having("gpu"))
    assert [c.run.id for c in claims] == ["gpu", "plain"]  # priority order kept
    claims = await store.claim("w2", 5, T0, T0 + LEASE, having("gpu", "cuda", "big"))
    assert [c.run.id for c in claims] == ["both"]
    [arm] = await store.claim("w3", 5, T0, T0 + LEASE, having("arm64"))
    assert arm.run.id == "arm"


async def test_next_available_at_ignores_runs_the_worker_cannot_take(store: Store) -> None:
    await store.enqueue(routed("gpu", "gpu"))
    await store.enqueue(dataclasses.replace(new_run("later", run_at=t(60))))
    assert await store.next_available_at() == t(60)
    assert await store.next_available_at(frozenset({"cpu"})) == t(60)
    assert await store.next_available_at(frozenset({"gpu", "cpu"})) == T0
    await store.claim("w1", 5, t(60), t(90))
    assert await store.next_available_at() is None


async def test_a_registered_worker_keeps_its_labels(store: Store) -> None:
    await store.register_worker(WorkerInfo("w1", "host", 1, 4, T0, T0, labels=("cuda", "gpu")))
    await store.register_worker(WorkerInfo("w2", "host", 2, 4, T0, T0))
    await store.heartbeat("w1", [], t(5), t(35))  # a heartbeat leaves them alone
    workers = {w.id: w for w in await store.list_workers()}
    assert workers["w1"].labels == ("cuda", "gpu")
    assert workers["w1"].heartbeat_at == t(5)
    assert workers["w2"].labels == ()
    await store.register_worker(WorkerInfo("w1", "host", 1, 4, T0, t(6), labels=("gpu",)))
    assert {w.id: w.labels for w in await store.list_workers()}["w1"] == ("gpu",)
