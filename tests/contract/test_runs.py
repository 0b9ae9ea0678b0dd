"""Contract: enqueue, get, idempotency, listing and paging, stats, purge."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from mcpexec.errors import Conflict
from mcpexec.models import (
    ExecSpec,
    FailureKind,
    InputFile,
    Limits,
    RetryPolicy,
    RunFilter,
    RunStatus,
    Script,
    Stream,
    ToolCall,
)
from mcpexec.store.base import NewRun, RunCursor, Store

from .contract_helpers import OK, T0, claim_one, enqueue, failed, new_run, t

pytestmark = pytest.mark.anyio


async def test_enqueue_then_get_round_trips_every_field(store: Store) -> None:
    spec = ExecSpec(
        script=Script(language="python", source="print('é')"),
        env={"A": "1"},
        inputs={"a.txt": "x", "b/c.bin": InputFile(content="AAE=", base64=True)},
        timeout_s=2.5,
        limits=Limits(memory_mb=64),
    )
    retry = RetryPolicy(max_attempts=5, delay_s=0.5)
    new = new_run("r1", tenant="acme", priority=7, labels={"team": "x", "a.b/c": "y"}, spec=spec)
    new = dataclasses.replace(new, retry=retry)
    run, created = await store.enqueue(new)
    assert created
    assert run.status == RunStatus.PENDING
    assert (run.id, run.tenant, run.priority, run.attempts) == ("r1", "acme", 7, 0)
    assert run.spec == spec
    assert run.retry == retry
    assert run.labels == {"team": "x", "a.b/c": "y"}
    assert run.created_at == T0  # microsecond precision kept
    assert run.created_at.tzinfo is not None
    assert run.started_at is None
    assert run.finished_at is None
    assert run.worker_id is None
    assert await store.get_run("r1") == run
    assert await store.get_run("r1", tenant="acme") == run
    assert await store.get_run("r1", tenant="other") is None
    assert await store.get_run("nope") is None


async def test_times_come_back_as_utc_whatever_zone_went_in(store: Store) -> None:
    paris = timezone(timedelta(hours=1))
    created = datetime(2026, 1, 1, 13, 0, 0, 1, tzinfo=paris)
    run, _ = await store.enqueue(new_run(created_at=created, run_at=created + timedelta(hours=1)))
    assert run.created_at == datetime(2026, 1, 1, 12, 0, 0, 1, tzinfo=UTC)
    assert run.created_at.utcoffset() == timedelta(0)
    assert run.run_at == datetime(2026, 1, 1, 13, 0, 0, 1, tzinfo=UTC)


async def test_seq_strictly_increases(store: Store) -> None:
    seqs = []
    for _ in range(5):
        run, _ = await store.enqueue(new_run())
        seqs.append(run.seq)
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 5


async def test_idempotency_key_returns_the_same_run_per_tenant(store: Store) -> None:
    first, created = await store.enqueue(new_run("a", key="k"))
    again, created_again = await store.enqueue(new_run("b", key="k", priority=9))
    assert created
    assert not created_again
    assert again == first
    assert await store.get_run("b") is None  # nothing was written
    other, created_other = await store.enqueue(new_run("c", key="k", tenant="t2"))
    assert created_other
    assert other.id == "c"
    _, created_nokey = await store.enqueue(new_run("d"))
    _, created_nokey2 = await store.enqueue(new_run("e"))
    assert created_nokey
    assert created_nokey2


async def test_idempotency_holds_after_the_run_finished(store: Store) -> None:
    await store.enqueue(new_run("a", key="k"))
    claim = await claim_one(store)
    await store.finish_attempt("a", claim.attempt, "w1", OK, t(1), None)
    again, created = await store.enqueue(new_run("b", key="k"))
    assert not created
    assert again.id == "a"
    assert again.status == RunStatus.COMPLETED


async def test_a_run_id_is_never_reused(store: Store) -> None:
    await store.enqueue(new_run("same"))
    with pytest.raises(Conflict):
        await store.enqueue(new_run("same", tenant="other"))


async def test_list_filters(store: Store) -> None:
    await enqueue(
        store,
        new_run("a", tenant="t1", labels={"env": "prod", "team": "x"}, created_at=t(0)),
        new_run("b", tenant="t1", labels={"env": "dev"}, created_at=t(10)),
        new_run("c", tenant="t2", labels={"env": "prod"}, created_at=t(20)),
        new_run("d", tenant="t1", created_at=t(30)),
    )
    await store.request_cancel("d", t(31))

    async def ids(**kw: object) -> list[str]:
        page = await store.list_runs(RunFilter.model_validate(kw), 100, None)
        assert page.next_cursor is None
        return [r.id for r in page.runs]

    assert await ids() == ["d", "c", "b", "a"]
    assert await ids(tenant="t1") == ["d", "b", "a"]
    assert await ids(status={"cancelled"}) == ["d"]
    assert await ids(status={"pending", "cancelled"}) == ["d", "c", "b", "a"]
    assert await ids(status={"running"}) == []
    assert await ids(labels={"env": "prod"}) == ["c", "a"]
    assert await ids(labels={"env": "prod", "team": "x"}) == ["a"]
    assert await ids(labels={"env": "prod", "team": "y"}) == []
    assert await ids(labels={"team": "x"}, tenant="t2") == []
    # created_after is inclusive, created_before exclusive
    assert await ids(created_after=t(10)) == ["d", "c", "b"]
    assert await ids(created_before=t(20)) == ["b", "a"]
    assert await ids(created_after=t(10), created_before=t(30)) == ["c", "b"]


async def test_list_filters_tool_runs_by_server_and_tool(store: Store) -> None:
    def tool_run(run_id: str, server: str, name: str) -> NewRun:
        spec = ExecSpec(tool=ToolCall(server=server, name=name, arguments={"x": 1}))
        return new_run(run_id, spec=spec)

    await enqueue(
        store,
        tool_run("a", "everything", "echo"),
        new_run("b"),  # a command run
        tool_run("c", "everything", "get-sum"),
        tool_run("d", "fs", "echo"),
        tool_run("e", "everything", "echo"),
    )

    async def ids(tool: str) -> list[str]:
        page = await store.list_runs(RunFilter(tool=tool), 100, None)
        return [r.id for r in page.runs]

    assert await ids("everything.echo") == ["e", "a"]
    assert await ids("fs.echo") == ["d"]
    assert await ids("everything") == []
    assert await ids("echo") == []
    [run] = (await store.list_runs(RunFilter(tool="fs.echo"), 1, None)).runs
    assert run.spec.tool == ToolCall(server="fs", name="echo", arguments={"x": 1})


async def test_paging_newest_first_without_gaps_or_duplicates(store: Store) -> None:
    all_ids = await enqueue(store, *(new_run(f"r{i:02}", created_at=t(i)) for i in range(23)))
    seen: list[str] = []
    cursor: RunCursor | None = None
    pages = 0
    while True:
        page = await store.list_runs(RunFilter(), 5, cursor)
        pages += 1
        seen += [r.id for r in page.runs]
        seqs = [r.seq for r in page.runs]
        assert seqs == sorted(seqs, reverse=True)
        if page.next_cursor is None:
            break
        assert page.next_cursor == str(page.runs[-1].seq)
        cursor = RunCursor.parse(page.next_cursor)
    assert seen == list(reversed(all_ids))
    assert pages == 5


async def test_paging_with_a_filter_and_an_exact_last_page(store: Store) -> None:
    for i in range(8):
        await store.enqueue(new_run(f"r{i}", labels={"odd": str(i % 2)}))
    first = await store.list_runs(RunFilter(labels={"odd": "1"}), 2, None)
    assert [r.id for r in first.runs] == ["r7", "r5"]
    assert first.next_cursor is not None
    second = await store.list_runs(
        RunFilter(labels={"odd": "1"}), 2, RunCursor.parse(first.next_cursor)
    )
    assert [r.id for r in second.runs] == ["r3", "r1"]
    assert second.next_cursor is None  # exactly two were left: no empty extra page


async def test_stats_count_by_status_and_tenant(store: Store) -> None:
    await enqueue(store, new_run("a"), new_run("b"), new_run("c", tenant="t2"), new_run("d"))
    await claim_one(store)  # a
    await store.request_cancel("b", t(1))
    everyone = await store.stats()
    assert everyone.by_status == {
        "pending": 2,
        "running": 1,
        "completed": 0,
        "failed": 0,
        "cancelled": 1,
    }
    assert (await store.stats("t2")).by_status["pending"] == 1
    assert sum((await store.stats("t9")).by_status.values()) == 0


async def test_stats_follow_every_transition_and_the_purge(store: Store) -> None:
    """Stats are counters kept with each change (SQL dialects: triggers, migration 0009), so
    every path that moves a run is checked against a recount of the runs themselves."""

    async def recount(tenant: str | None) -> dict[str, int]:
        counts = dict.fromkeys((s.value for s in RunStatus), 0)
        for run in (await store.list_runs(RunFilter(tenant=tenant), 500, None)).runs:
            counts[run.status.value] += 1
        return counts

    async def check() -> None:
        for tenant in (None, "default", "t2"):
            assert (await store.stats(tenant)).by_status == await recount(tenant), tenant

    await enqueue(store, *(new_run(f"r{i}") for i in range(6)), new_run("x", tenant="t2"))
    await check()
    done, retried, lost, cancelled = [await claim_one(store, now=t(0)) for _ in range(4)]
    await check()
    await store.finish_attempt(done.run.id, done.attempt, "w1", OK, t(1), None)
    await store.finish_attempt(retried.run.id, retried.attempt, "w1", failed(), t(1), t(2))
    await store.request_cancel(cancelled.run.id, t(1))
    await store.finish_attempt(
        cancelled.run.id, cancelled.attempt, "w1", failed(FailureKind.CANCELLED), t(1), None
    )
    await store.request_cancel("r5", t(1))  # a pending run: cancelled at once
    await check()
    await store.expire_worker("w1", t(3))
    for claim in await store.expired_leases(t(100)):  # the reaper's path: lost, then failed
        await store.finish_attempt(
            claim.run.id, claim.attempt, "w1", failed(FailureKind.WORKER_LOST), t(4),
            None, lease_expired_before=t(100),
        )  # fmt: skip
    await check()
    assert (await store.get_run(lost.run.id)).status == RunStatus.FAILED  # type: ignore[union-attr]
    assert await store.purge_finished(t(1000))
    await check()
    assert sum((await store.stats()).by_status.values()) == len((await store.list_runs(
        RunFilter(), 500, None)).runs)  # fmt: skip


async def test_purge_finished_deletes_runs_with_attempts_logs_and_artifacts(store: Store) -> None:
    from mcpexec.models import Artifact

    await enqueue(store, new_run("old", key="k"), new_run("new"), new_run("live"))
    old = await claim_one(store, now=t(0))
    await store.append_log("old", 1, "w1", Stream.STDOUT, b"out")
    artifact = Artifact(run_id="old", name="f", size=1, sha256="0" * 64, attempt=1, created_at=t(0))
    assert await store.add_artifact(artifact, "w1")
    await store.finish_attempt("old", old.attempt, "w1", failed(), t(10), None)
    new = await claim_one(store, now=t(0))
    await store.finish_attempt("new", new.attempt, "w1", OK, t(100), None)
    await claim_one(store, now=t(0))  # live stays running

    assert await store.purge_finished(t(50)) == ["old"]
    assert await store.get_run("old") is None
    assert await store.attempts("old") == []
    assert await store.list_artifacts("old") == []
    assert await store.read_log("old", Stream.STDOUT, 0, 100) == (b"", 0)
    # the idempotency key is free again once its run is gone
    _, created = await store.enqueue(new_run("again", key="k"))
    assert created
    assert await store.purge_finished(t(1000), limit=10) == ["new"]
    assert await store.get_run("live") is not None
    assert await store.purge_finished(t(1000)) == []


async def test_purge_respects_limit_oldest_first(store: Store) -> None:
    for i in range(5):
        await store.enqueue(new_run(f"r{i}"))
    for i in reversed(range(5)):  # r4 cancelled first, at t(0)
        await store.request_cancel(f"r{i}", t(4 - i))
    # which runs go is defined (oldest finished first); the order of the returned ids is not
    assert set(await store.purge_finished(t(100), limit=2)) == {"r4", "r3"}
    assert set(await store.purge_finished(t(100), limit=10)) == {"r2", "r1", "r0"}


async def test_nul_characters_in_labels_and_tool_arguments_are_stored_and_filtered(
    store: Store,
) -> None:
    # JSON text escapes NUL as \u0000, which PostgreSQL's jsonb refuses: the filters must not
    # parse the stored documents as jsonb.
    spec = ExecSpec(tool=ToolCall(server="fs", name="echo", arguments={"text": "a\0b"}))
    await enqueue(
        store,
        new_run("nul-tool", spec=spec, labels={"k": "x\0y"}),
        new_run("plain", labels={"k": "v"}),
    )

    async def ids(**filters: Any) -> list[str]:
        page = await store.list_runs(RunFilter(**filters), 100, None)
        return [r.id for r in page.runs]

    assert await ids() == ["plain", "nul-tool"]
    assert await ids(tool="fs.echo") == ["nul-tool"]
    assert await ids(labels={"k": "v"}) == ["plain"]
    assert await ids(labels={"k": "x\0y"}) == ["nul-tool"]
    run = await store.get_run("nul-tool")
    assert run is not None
    assert run.labels == {"k": "x\0y"}
    assert run.spec.tool is not None
    assert run.spec.tool.arguments == {"text": "a\0b"}
