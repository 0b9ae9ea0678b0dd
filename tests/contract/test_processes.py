"""Several processes on one store (SQLite file or PostgreSQL database): each run claimed
exactly once, a tenant's ``max_concurrent`` never exceeded, with the claim's own transaction
as the only coordination, and a tenant's ``max_queued`` filled exactly by concurrent
submitters in several processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcpexec.models import RunFilter
from mcpexec.store.base import TenantRecord
from mcpexec.store.url import open_store, sqlite_url
from pg_server import fresh_schema

from .barrier import release
from .contract_helpers import T0, new_run

pytestmark = pytest.mark.anyio
HERE = Path(__file__).parent


@pytest.fixture(params=["sqlite", "postgres"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL every process of a test opens."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "mcpexec.db")
        return
    with fresh_schema() as url:
        yield url


def _spawn(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [sys.executable, *args],
        stdin=subprocess.PIPE,  # the go signal (barrier.release)
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 10])
async def test_two_processes_never_claim_the_same_run(shared_url: str, batch: int) -> None:
    store = open_store(shared_url)
    await store.open()
    ids = {(await store.enqueue(new_run(f"r{i:03}", created_at=T0)))[0].id for i in range(500)}
    await store.close()

    procs = [_spawn(str(HERE / "claimer.py"), shared_url, n, str(batch)) for n in ("wa", "wb")]
    await release(procs)
    started = time.perf_counter()
    results, errors = [], []
    for proc in procs:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
        errors.append(err)
    elapsed = time.perf_counter() - started

    claimed = results[0] + results[1]
    counts = (len(results[0]), len(results[1]))
    assert len(claimed) == len(set(claimed)) == 500, (counts, errors)  # each exactly once
    assert set(claimed) == ids
    if batch == 1:
        # 500 one-run transactions take long enough that both processes really compete; with
        # bigger batches a descheduled process may legitimately find the queue drained.
        assert min(counts) > 0, (counts, errors)
    print(f"batch={batch}: 500 claims+finishes by 2 processes {counts} in {elapsed:.2f}s")

    store = open_store(shared_url)
    await store.open()
    assert (await store.stats()).by_status["completed"] == 500
    attempts = [await store.attempts(i) for i in ("r000", "r250", "r499")]
    assert all(len(a) == 1 for a in attempts)
    await store.close()


def _max_overlap(spans: list[tuple[int, int]]) -> int:
    """The most intervals open at one instant (an end before a start at the same instant)."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    most = current = 0
    for _, delta in events:
        current += delta
        most = max(most, current)
    return most


@pytest.mark.slow
async def test_three_processes_never_over_admit_a_tenant(shared_url: str) -> None:
    """max_concurrent is counted in the claim's own transaction: three claiming processes
    (batches of 4) never run more than 3 of tenant capped's runs at once, while tenant free
    (no limit) is not held back by it."""
    store = open_store(shared_url)
    await store.open()
    await store.create_tenant(TenantRecord("capped", T0, max_concurrent=3))
    for i in range(120):
        await store.enqueue(new_run(f"c{i:03}", tenant="capped", created_at=T0))
    for i in range(30):
        await store.enqueue(new_run(f"f{i:03}", tenant="free", created_at=T0))
    await store.close()

    procs = [_spawn(str(HERE / "quota_claimer.py"), shared_url, n, "4") for n in ("p1", "p2", "p3")]
    await release(procs)
    spans: list[list[Any]] = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        spans.extend(json.loads(out))
    capped = [(s, e) for _, tenant, s, e in spans if tenant == "capped"]
    assert len(capped) == 120
    assert len({r for r, *_ in spans}) == 150
    overlap = _max_overlap(capped)
    print(f"capped tenant: 120 runs by 3 processes, at most {overlap} running at once (limit 3)")
    assert overlap <= 3


@pytest.mark.slow
async def test_submitters_in_three_processes_never_over_admit_max_queued(
    shared_url: str,
) -> None:
    """max_queued is counted in the enqueue's own transaction: three processes, each with 8
    submits in flight (72 in all) against tenant q's max_queued=25, admit exactly 25."""
    store = open_store(shared_url)
    await store.open()
    await store.create_tenant(TenantRecord("q", T0, max_queued=25))
    await store.close()

    procs = [
        _spawn(str(HERE / "quota_submitter.py"), shared_url, n, "24") for n in ("s1", "s2", "s3")
    ]
    await release(procs)
    admitted: list[str] = []
    refused = 0
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        result = json.loads(out)
        admitted += result["admitted"]
        refused += result["refused"]
    print(f"tenant q: 72 submits by 3 processes, {len(admitted)} admitted (max_queued 25)")
    assert len(admitted) == 25
    assert refused == 72 - 25
    store = open_store(shared_url)
    await store.open()
    try:
        stored = await store.list_runs(RunFilter(tenant="q"), 100, None)
        assert sorted(r.id for r in stored.runs) == sorted(admitted)
        assert (await store.stats("q")).by_status["pending"] == 25
    finally:
        await store.close()
