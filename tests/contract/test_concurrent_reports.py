"""Concurrent reports of executing runs: what SQLite's grouped writes (finishes, log chunks,
progress sharing a transaction) must not change about any store."""

from __future__ import annotations

import asyncio

import pytest

from mcpexec.models import Progress, RunStatus, Stream
from mcpexec.store.base import Store

from .contract_helpers import LEASE, OK, T0, enqueue, failed, new_run, t

pytestmark = pytest.mark.anyio


async def test_concurrent_finishes_logs_and_progress_each_answered_and_fenced(
    store: Store,
) -> None:
    ids = await enqueue(store, *(new_run(f"r-{i}") for i in range(12)))
    claims = await store.claim("w1", 12, T0, T0 + LEASE)
    assert sorted(c.run.id for c in claims) == sorted(ids)

    async def report(run_id: str, n: int) -> object:
        # Chunks of one stream are awaited in order (as the output pump does); the reports
        # of different runs race each other.
        for k in range(3):
            await store.append_log(run_id, 1, "w1", Stream.STDOUT, f"{run_id}:{k};".encode())
        await store.record_progress(run_id, 1, "w1", Progress(value=n / 12, message=f"step {n}"))
        outcome = OK if n % 2 == 0 else failed()
        return await store.finish_attempt(run_id, 1, "w1", outcome, t(1), None)

    async def fenced(run_id: str) -> object:
        # Another worker's late reports, in the same bursts: refused, nothing changed.
        return (
            await store.append_log(run_id, 1, "w-other", Stream.STDOUT, b"late"),
            await store.finish_attempt(run_id, 1, "w-other", OK, t(1), None),
        )

    results = await asyncio.gather(
        *(report(run_id, n) for n, run_id in enumerate(ids)),
        *(fenced(run_id) for run_id in ids[:4]),
    )
    finished, late = results[: len(ids)], results[len(ids) :]
    assert late == [(None, None)] * 4
    for n, (run_id, run) in enumerate(zip(ids, finished, strict=True)):
        assert run is not None
        assert getattr(run, "id", None) == run_id
        stored = await store.get_run(run_id)
        assert stored is not None
        assert stored.status == (RunStatus.COMPLETED if n % 2 == 0 else RunStatus.FAILED)
        assert stored.progress == Progress(value=n / 12, message=f"step {n}")
        data, end = await store.read_log(run_id, Stream.STDOUT, 0, 1000)
        assert data == f"{run_id}:0;{run_id}:1;{run_id}:2;".encode()
        assert end == len(data)
