"""Reports of executing runs: what SQLite's grouped writes (finishes, log chunks,
progress sharing a transaction) must not change about any store."""

from __future__ import annotations

import asyncio
import dataclasses

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


async def test_finish_appends_the_log_tail_in_its_own_transaction(store: Store) -> None:
    await enqueue(store, new_run("tail"), new_run("fenced"))
    claims = await store.claim("w1", 2, T0, T0 + LEASE)
    assert len(claims) == 2
    used = await store.storage_used()
    assert await store.append_log("tail", 1, "w1", Stream.STDOUT, b"live;") == 0
    tail = ((Stream.STDOUT, b"last;"), (Stream.STDERR, b"err"), (Stream.STDOUT, b"[marker]"))
    outcome = dataclasses.replace(OK, log_tail=tail)
    # Another worker's finish with a tail: fenced out, none of its bytes land.
    assert await store.finish_attempt("fenced", 1, "w-other", outcome, t(1), None) is None
    done = await store.finish_attempt("tail", 1, "w1", outcome, t(1), None)
    assert done is not None
    assert done.status == RunStatus.COMPLETED
    assert await store.read_log("tail", Stream.STDOUT, 0, 100) == (b"live;last;[marker]", 18)
    assert await store.read_log("tail", Stream.STDERR, 0, 100) == (b"err", 3)
    assert await store.read_log("fenced", Stream.STDOUT, 0, 100) == (b"", 0)
    assert await store.storage_used() == used + len(b"live;last;[marker]err")
    # Finished: a retried report (the same outcome) is fenced out and appends nothing again.
    assert await store.finish_attempt("tail", 1, "w1", outcome, t(2), None) is None
    assert await store.read_log("tail", Stream.STDOUT, 0, 100) == (b"live;last;[marker]", 18)
