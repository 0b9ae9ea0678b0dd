"""Contract: every shape of the runs list (each walks its own index in the SQL dialects) gives
what a plain filter of all runs gives, in the list's order, across pages; the hourly rollup
behind the overview's charts (issue 17, "history at scale")."""

from __future__ import annotations

import dataclasses
import itertools
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from mcpexec.models import ExecSpec, Run, RunFilter, RunStatus, ToolCall
from mcpexec.store._run_list import list_runs_sql
from mcpexec.store._sqlite_hooks import FINISHED_COUNTS, ISOLATIONS
from mcpexec.store.base import ROLLUP_BOUNDS_US, HourStats, RunCursor, Store, rollup_bucket
from mcpexec.store.sqlite import SqliteStore

from .contract_helpers import OK, T0, claim_one, failed, new_run, t

pytestmark = pytest.mark.anyio

S = RunStatus


async def _history_of_runs(store: Store) -> list[Run]:
    """36 runs over two tenants, labels, tasks, owners, tools and every status, whose creation
    times are out of seq order and often equal."""
    for i in range(36):
        labels = {"team": "a" if i % 3 else "b"}
        if i % 4 == 1:
            labels["env"] = "prod"
        tool = ToolCall(server="fs", name="echo" if i % 12 else "cat") if i % 6 == 0 else None
        new = new_run(
            f"r{i:02}",
            tenant="t2" if i % 2 else "default",
            labels=labels,
            created_at=t((i * 7) % 12),
            spec=ExecSpec(tool=tool) if tool else None,
        )
        new = dataclasses.replace(
            new, task="build" if i % 4 == 0 else None, owner="alice" if i % 5 == 0 else "bob"
        )
        await store.enqueue(new)
    for i in range(0, 36, 7):
        await store.request_cancel(f"r{i:02}", t(20))
    claims = await store.claim("w1", 20, t(20), t(50))
    for n, claim in enumerate(claims[:14]):
        outcome = OK if n < 8 else failed()
        await store.finish_attempt(claim.run.id, claim.attempt, "w1", outcome, t(21), None)
    every = (await store.list_runs(RunFilter(), 500, None)).runs
    assert len(every) == 36
    assert {r.status for r in every} == set(RunStatus)
    return every


def _matches(run: Run, f: RunFilter) -> bool:
    return (
        (f.tenant is None or run.tenant == f.tenant)
        and (not f.status or run.status in f.status)
        and all(run.labels.get(k) == v for k, v in f.labels.items())
        and (f.task is None or run.task == f.task)
        and (f.owner is None or run.owner == f.owner)
        and (f.tool is None or (run.spec.tool is not None and run.spec.tool.qualified == f.tool))
        and (f.created_after is None or run.created_at >= f.created_after)
        and (f.created_before is None or run.created_at < f.created_before)
    )


FILTERS = [
    RunFilter(),
    RunFilter(tenant="t2"),
    RunFilter(status=frozenset({S.FAILED})),
    RunFilter(status=frozenset({S.CANCELLED, S.RUNNING})),
    RunFilter(status=frozenset(RunStatus)),
    RunFilter(status=frozenset({S.COMPLETED, S.PENDING}), tenant="default"),
    RunFilter(labels={"team": "b"}),
    RunFilter(labels={"team": "a", "env": "prod"}),
    RunFilter(labels={"team": "nobody"}),
    RunFilter(labels={"env": "prod"}, status=frozenset({S.COMPLETED, S.FAILED})),
    RunFilter(task="build"),
    RunFilter(task="build", status=frozenset({S.CANCELLED, S.COMPLETED})),
    RunFilter(owner="alice"),
    RunFilter(owner="bob", labels={"team": "b"}, tenant="t2"),
    RunFilter(tool="fs.echo"),
    RunFilter(tool="fs.cat", owner="alice"),
    RunFilter(created_after=t(5)),
    RunFilter(created_before=t(4)),
    RunFilter(created_after=t(3), created_before=t(9)),
    RunFilter(created_after=t(100)),
    RunFilter(created_after=t(2), status=frozenset({S.COMPLETED, S.PENDING})),
    RunFilter(created_before=t(8), labels={"team": "a"}, tenant="default"),
    RunFilter(created_after=t(0), created_before=t(12), tool="fs.echo", task="build"),
]


@pytest.mark.parametrize("f", FILTERS, ids=[str(i) for i in range(len(FILTERS))])
async def test_every_filter_shape_pages_through_what_a_plain_filter_gives(
    store: Store, f: RunFilter
) -> None:
    every = await _history_of_runs(store)
    windowed = f.created_after is not None or f.created_before is not None
    expected = [r for r in every if _matches(r, f)]
    if windowed:  # a time window is ordered by creation time, then seq
        expected.sort(key=lambda r: (r.created_at, r.seq), reverse=True)
    got: list[str] = []
    cursor: RunCursor | None = None
    for _ in range(40):
        page = await store.list_runs(f, 4, cursor)
        got += [r.id for r in page.runs]
        if page.next_cursor is None:
            break
        cursor = RunCursor.parse(page.next_cursor)
        assert (cursor.created_at_us is not None) == windowed
    assert got == [r.id for r in expected]


async def test_the_rollup_counts_finishes_by_hour_with_duration_and_wait(store: Store) -> None:
    for i in range(4):
        await store.enqueue(new_run(f"h{i}", tenant="t2" if i == 3 else "default"))
    await store.request_cancel("h3", t(1))  # never started: counted, no duration or wait
    ok = await claim_one(store, now=t(2))  # waited 2 s
    bad = await claim_one(store, now=t(2))
    late = await claim_one(store, now=t(3600))
    await store.finish_attempt(ok.run.id, ok.attempt, "w1", OK, t(2.03), None)
    await store.finish_attempt(bad.run.id, bad.attempt, "w1", failed(), t(2.03), None)
    await store.finish_attempt(late.run.id, late.attempt, "w1", OK, t(3700), None)
    hour = T0.replace(minute=0, second=0, microsecond=0)
    wait_2s, took_30ms = rollup_bucket(2_000_000), rollup_bucket(30_000)
    assert ROLLUP_BOUNDS_US[took_30ms] == 50_000
    first = HourStats(
        hour=hour,
        finished={"completed": 1, "failed": 1, "cancelled": 1},
        duration={took_30ms: 2},
        wait={wait_2s: 2},
    )
    second = HourStats(
        hour=hour + timedelta(hours=1),
        finished={"completed": 1},
        duration={rollup_bucket(100_000_000): 1},
        wait={rollup_bucket(3_600_000_000): 1},
    )
    assert await store.run_history(T0) == [first, second]
    assert await store.run_history(t(3600)) == [second]
    assert await store.run_history(T0, tenant="t2") == [
        HourStats(hour=hour, finished={"cancelled": 1})
    ]
    assert await store.purge_finished(t(10_000))
    assert await store.run_history(T0) == [first, second]  # kept after the runs are gone
    # Until pruned: the hours before the one holding t(3600) go, a few rows at a time.
    assert await store.prune_history(t(1)) == 0  # nothing before T0's own hour
    pruned = [await store.prune_history(t(3600), limit=2)]
    while pruned[-1]:
        assert len(pruned) < 20, pruned
        pruned.append(await store.prune_history(t(3600), limit=2))
    assert sum(pruned) > 0
    assert await store.run_history(T0) == [second]
    assert await store.run_history(T0, tenant="t2") == []


@pytest.mark.parametrize("windowed_cursor", [False, True])
async def test_sqlite_walks_an_index_in_the_lists_order_for_every_shape(
    tmp_path: Path, windowed_cursor: bool
) -> None:
    """What keeps each shape a few milliseconds at a million runs: no shape reads every run
    (only the unfiltered list scans runs, newest first, stopping after a page), and no shape
    sorts its matches; only the merge of per-status walks sorts, a page from each."""
    store = SqliteStore(tmp_path / "plans.db")
    await store.open()
    await store.close()
    conn = sqlite3.connect(tmp_path / "plans.db")
    try:
        for f in FILTERS:
            windowed = f.created_after is not None or f.created_before is not None
            cursor = RunCursor(5, 7 if windowed else None) if windowed_cursor else None
            sql, args = list_runs_sql("sqlite", f, 50, cursor)
            plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args)]
            if f.model_dump(exclude_defaults=True) and f.status != frozenset(RunStatus):
                assert "SCAN runs" not in plan, (f, plan)
            for before, step in itertools.pairwise(plan):
                if step.startswith("USE TEMP B-TREE"):
                    assert before.startswith("SCAN s"), (f, plan)
    finally:
        conn.close()


async def test_a_cursor_of_the_other_order_keeps_the_runs_below_its_seq(store: Store) -> None:
    every = await _history_of_runs(store)
    middle = every[len(every) // 2]
    window = RunFilter(created_after=t(0))
    from_window = RunCursor(seq=middle.seq, created_at_us=12345)
    plain = await store.list_runs(RunFilter(), 500, from_window)
    assert [r.id for r in plain.runs] == [r.id for r in every if r.seq < middle.seq]
    windowed = await store.list_runs(window, 500, RunCursor(seq=middle.seq))
    below = sorted((r for r in every if r.seq < middle.seq), key=lambda r: (r.created_at, r.seq))
    assert [r.id for r in windowed.runs] == [r.id for r in reversed(below)]


async def test_sqlite_alert_figures_walk_the_window_of_finishes(tmp_path: Path) -> None:
    """With the statistics of a large history (ANALYZE), SQLite preferred to walk every run
    in tenant order for the GROUP BY: 214 ms at 1M runs on each scrape and alert round."""
    store = SqliteStore(tmp_path / "figures.db")
    await store.open()
    await store.close()
    conn = sqlite3.connect(tmp_path / "figures.db")
    try:
        conn.execute("ANALYZE")  # creates sqlite_stat1; then a million runs' statistics
        conn.execute("DELETE FROM sqlite_stat1")
        conn.executemany(
            "INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES ('runs', ?, ?)",
            [("runs_tenant", "1000000 500000 1"), ("runs_finished", "1000000 2"),
             ("runs_status", "1000000 200000 1"), (None, "1000000")],
        )  # fmt: skip
        conn.commit()
        conn.execute("ANALYZE sqlite_schema")  # reload the statistics
        args = {"since": 0, "now": 0}
        for sql in (FINISHED_COUNTS, ISOLATIONS):
            plan = " / ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args))
            assert "USING INDEX runs_finished (finished_at>?)" in plan, plan
    finally:
        conn.close()


async def test_the_reapers_purge_forgets_the_history_nobody_can_read(
    store: Store, tmp_path: Path
) -> None:
    """The rollup outlives its runs, but not the longest history the API serves: the purge
    prunes the hours before it, and keeps the rest."""
    from mcpexec.events import EventHub
    from mcpexec.history import MAX_HISTORY_HOURS
    from mcpexec.models import utcnow
    from mcpexec.reaper import Reaper, ReaperOptions
    from mcpexec.settings import Settings
    from mcpexec.store.blobs import FileBlobStore

    now = utcnow()
    old, recent = now - timedelta(hours=MAX_HISTORY_HOURS + 3), now - timedelta(hours=2)
    for run_id, at in (("old", old), ("recent", recent)):
        await store.enqueue(new_run(run_id, created_at=at))
        claim = await claim_one(store, now=at)
        await store.finish_attempt(claim.run.id, claim.attempt, "w1", OK, at, None)
    assert [h.finished for h in await store.run_history(old)] == [{"completed": 1}] * 2
    # retention_days far beyond both runs: only the history is pruned, the runs stay.
    options = ReaperOptions.from_settings(Settings(home=tmp_path, retention_days=3650))
    reaper = Reaper(store, FileBlobStore(tmp_path / "blobs"), EventHub(), options)
    assert await reaper.purge() == 0
    [kept] = await store.run_history(old)
    assert kept.hour == recent.replace(minute=0, second=0, microsecond=0)
    assert await store.get_run("old") is not None
    assert await reaper.prune_history() == 0
