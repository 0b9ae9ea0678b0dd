"""The store contract of workflows (issue 16), on every store: written against ``Store`` only."""

from __future__ import annotations

import pytest

from mcpexec.errors import Conflict
from mcpexec.store.base import Store, WorkflowEvent, WorkflowRecord, WorkflowRunRecord

from .contract_helpers import T0, t

pytestmark = pytest.mark.anyio


def definition(
    name: str = "pipe", digest: str = "sha256:a", tenant: str = "default"
) -> WorkflowRecord:
    return WorkflowRecord(
        tenant=tenant,
        name=name,
        version=0,
        owner="p1",
        content_hash=digest,
        definition={"name": name, "steps": {"a": {"shell": "true"}}, "hash": digest},
        created_at=T0,
    )


def wrun(rid: str = "w1", tenant: str = "default", status: str = "queued") -> WorkflowRunRecord:
    return WorkflowRunRecord(
        id=rid,
        tenant=tenant,
        owner="p1",
        workflow="pipe",
        version=1,
        params={"feature": "x"},
        status=status,
        state={"steps": {"a": {"status": "pending"}}},
        created_at=T0,
        updated_at=T0,
    )


def event(rid: str, kind: str, step: str | None = None) -> WorkflowEvent:
    return WorkflowEvent(run_id=rid, at=t(1), kind=kind, step=step, detail={"k": kind})


async def test_define_versions_by_content_hash(store: Store) -> None:
    v1, created = await store.define_workflow(definition())
    assert (v1.version, created, v1.definition["hash"]) == (1, True, "sha256:a")
    again, created = await store.define_workflow(definition())
    assert (again.version, created) == (1, False)
    v2, created = await store.define_workflow(definition(digest="sha256:b"))
    assert (v2.version, created) == (2, True)
    back, created = await store.define_workflow(definition(digest="sha256:a"))
    assert (back.version, created) == (3, True)  # going back is a change
    assert [v.version for v in await store.workflow_versions("default", "pipe")] == [1, 2, 3]
    latest = await store.get_workflow("default", "pipe", None)
    assert latest is not None
    assert latest.version == 3
    first = await store.get_workflow("default", "pipe", 1)
    assert first is not None
    assert first.created_at == T0
    assert await store.get_workflow("default", "pipe", 9) is None
    assert await store.get_workflow("other", "pipe", None) is None
    assert await store.workflow_versions("default", "nope") == []


async def test_list_workflows_latest_per_name_and_tenant(store: Store) -> None:
    await store.define_workflow(definition("b"))
    await store.define_workflow(definition("a"))
    await store.define_workflow(definition("a", "sha256:z"))
    await store.define_workflow(definition("a", tenant="t2"))
    every = await store.list_workflows(None)
    assert [(w.tenant, w.name, w.version) for w in every] == [
        ("default", "a", 2),
        ("default", "b", 1),
        ("t2", "a", 1),
    ]
    assert [w.name for w in await store.list_workflows("t2")] == ["a"]


async def test_workflow_run_create_get_list(store: Store) -> None:
    created = await store.create_workflow_run(wrun("w1"), [event("w1", "queued")])
    assert (created.revision, created.status, created.params) == (1, "queued", {"feature": "x"})
    await store.create_workflow_run(wrun("w2", status="running"), [])
    await store.create_workflow_run(wrun("w3", tenant="t2"), [])
    with pytest.raises(Conflict):
        await store.create_workflow_run(wrun("w1"), [])
    got = await store.get_workflow_run("w1")
    assert got is not None
    assert got.state == {"steps": {"a": {"status": "pending"}}}
    assert got.created_at == T0
    assert await store.get_workflow_run("w1", "t2") is None
    assert await store.get_workflow_run("nope") is None
    assert [r.id for r in await store.list_workflow_runs(None)] == ["w3", "w2", "w1"]
    assert [r.id for r in await store.list_workflow_runs("default")] == ["w2", "w1"]
    assert [r.id for r in await store.list_workflow_runs(None, statuses={"queued"})] == ["w3", "w1"]
    assert [r.id for r in await store.list_workflow_runs(None, workflow="other")] == []
    assert [r.id for r in await store.list_workflow_runs(None, limit=1)] == ["w3"]
    seqs = [r.seq for r in await store.list_workflow_runs(None)]
    assert seqs == sorted(seqs, reverse=True)
    assert len(set(seqs)) == 3


async def test_update_is_compare_and_set_with_events(store: Store) -> None:
    await store.create_workflow_run(wrun("w1"), [event("w1", "queued")])
    state = {"steps": {"a": {"status": "running", "run_id": "r1"}}}
    moved = await store.update_workflow_run(
        "w1", 1, "running", state, t(2), [event("w1", "started", "a")]
    )
    assert moved is not None
    assert (moved.revision, moved.status, moved.state) == (
        2,
        "running",
        state,
    )
    assert moved.updated_at == t(2)
    stale = await store.update_workflow_run("w1", 1, "failed", {}, t(3), [event("w1", "lost")])
    assert stale is None  # another engine moved it on: nothing written, no event
    assert await store.update_workflow_run("nope", 1, "failed", {}, t(3), []) is None
    got = await store.get_workflow_run("w1")
    assert got is not None
    assert (got.status, got.revision) == ("running", 2)
    events = await store.workflow_events("w1")
    assert [(e.kind, e.step) for e in events] == [("queued", None), ("started", "a")]
    assert events[1].detail == {"k": "started"}
    assert events[1].at == t(1)


async def test_events_append_and_page(store: Store) -> None:
    await store.create_workflow_run(wrun("w1"), [])
    await store.create_workflow_run(wrun("w2"), [])
    await store.add_workflow_events([event("w1", "a"), event("w2", "x"), event("w1", "b")])
    events = await store.workflow_events("w1")
    assert [e.kind for e in events] == ["a", "b"]
    assert events[0].seq < events[1].seq
    assert [e.kind for e in await store.workflow_events("w1", after=events[0].seq)] == ["b"]
    assert [e.kind for e in await store.workflow_events("w1", limit=1)] == ["a"]
    assert await store.workflow_events("nope") == []


async def test_returned_state_is_a_copy(store: Store) -> None:
    created = await store.create_workflow_run(wrun("w1"), [])
    created.state["steps"]["a"]["status"] = "mutated"
    got = await store.get_workflow_run("w1")
    assert got is not None
    assert got.state["steps"]["a"]["status"] == "pending"
