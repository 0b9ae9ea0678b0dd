"""The heartbeat's "attempt(s) were reclaimed" warning means what it says (issue 8, item 12).

A heartbeat snapshots the attempts it holds, then awaits the store; an attempt that finishes
meanwhile is "not held" by the time the store looks. That is the worker's own finish, not a
reclaim: no warning, no re-registration. A real reclaim still warns. The store below gates its
heartbeat and finish so that the interleavings are forced, not hoped for."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mcpexec.app import App, Principal
from mcpexec.executor.base import ExecRequest, ExecResult, ExecSink
from mcpexec.executor.fake import FakeExecutor
from mcpexec.models import Failure, FailureKind, RunRequest, RunStatus, utcnow
from mcpexec.settings import Settings
from mcpexec.store.base import AttemptOutcome
from mcpexec.store.blobs import FileBlobStore
from mcpexec.store.memory import MemoryStore
from mcpexec.worker import Worker

pytestmark = pytest.mark.anyio

ADMIN = Principal("t0", "test", "admin", "default")
BOUND_S = 10.0
RECLAIMED = "were reclaimed from this worker"


class GatedStore(MemoryStore):
    """``heartbeat`` waits for ``beat`` before it reads; ``finish_attempt`` writes, then waits
    for ``finish_returns`` before returning (the worker is still "reporting")."""

    def __init__(self) -> None:
        super().__init__()
        self.beat = asyncio.Event()
        self.beat_waiting = asyncio.Event()
        self.finish_returns = asyncio.Event()
        self.finish_returns.set()
        self.finished = asyncio.Event()
        self.registrations = 0

    async def heartbeat(self, *args: Any, **kwargs: Any) -> Any:
        self.beat_waiting.set()
        await self.beat.wait()
        return await super().heartbeat(*args, **kwargs)

    async def finish_attempt(self, *args: Any, **kwargs: Any) -> Any:
        updated = await super().finish_attempt(*args, **kwargs)
        self.finished.set()
        await self.finish_returns.wait()
        return updated

    async def register_worker(self, *args: Any, **kwargs: Any) -> None:
        self.registrations += 1
        await super().register_worker(*args, **kwargs)


class Blocking:
    """An executor behaviour that runs until ``release`` is set."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, _r: ExecRequest, _s: ExecSink, cancel: asyncio.Event) -> ExecResult:
        self.started.set()
        await asyncio.wait(
            [asyncio.ensure_future(e.wait()) for e in (self.release, cancel)],
            return_when=asyncio.FIRST_COMPLETED,
        )
        return ExecResult(succeeded=True, exit_code=0)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[App, GatedStore, Blocking]]:
    # heartbeat_s far beyond the test: only the heartbeats the test starts happen
    settings = Settings(home=tmp_path, poll_s=0.05, heartbeat_s=600)
    store = GatedStore()
    behaviour = Blocking()
    app = App(settings, store, FakeExecutor(behaviour), FileBlobStore(tmp_path / "a"))
    await app.open()
    await app.start_background(workers=1, reaper=False)
    yield app, store, behaviour
    store.beat.set()
    store.finish_returns.set()
    behaviour.release.set()
    await asyncio.wait_for(app.close(), BOUND_S)


async def _running(app: App, behaviour: Blocking) -> tuple[str, Worker]:
    run, _ = await app.submit(RunRequest.model_validate({"command": ["x"]}), ADMIN)
    await asyncio.wait_for(behaviour.started.wait(), BOUND_S)
    return run.id, app.workers[0]


async def _beat_started(worker: Worker, store: GatedStore) -> asyncio.Task[None]:
    store.beat_waiting.clear()
    beat = asyncio.create_task(worker._heartbeat())
    await asyncio.wait_for(store.beat_waiting.wait(), BOUND_S)  # snapshot taken, store awaited
    return beat


async def test_an_attempt_finished_after_the_snapshot_is_not_reported_reclaimed(
    setup: tuple[App, GatedStore, Blocking], caplog: pytest.LogCaptureFixture
) -> None:
    app, store, behaviour = setup
    run_id, worker = await _running(app, behaviour)
    registered = store.registrations
    beat = await _beat_started(worker, store)
    behaviour.release.set()
    assert (await app.wait(run_id, ADMIN, BOUND_S)).status == RunStatus.COMPLETED
    store.beat.set()
    with caplog.at_level(logging.WARNING, logger="mcpexec.worker"):
        await asyncio.wait_for(beat, BOUND_S)
    assert RECLAIMED not in caplog.text
    assert store.registrations == registered


async def test_an_attempt_still_reporting_is_not_reported_reclaimed(
    setup: tuple[App, GatedStore, Blocking], caplog: pytest.LogCaptureFixture
) -> None:
    app, store, behaviour = setup
    run_id, worker = await _running(app, behaviour)
    store.finish_returns.clear()
    beat = await _beat_started(worker, store)
    behaviour.release.set()
    await asyncio.wait_for(store.finished.wait(), BOUND_S)  # written, the worker still awaits
    store.beat.set()
    with caplog.at_level(logging.WARNING, logger="mcpexec.worker"):
        await asyncio.wait_for(beat, BOUND_S)
    assert RECLAIMED not in caplog.text
    store.finish_returns.set()
    assert (await app.wait(run_id, ADMIN, BOUND_S)).status == RunStatus.COMPLETED


async def test_a_real_reclaim_still_warns_and_stops_the_attempt(
    setup: tuple[App, GatedStore, Blocking], caplog: pytest.LogCaptureFixture
) -> None:
    app, store, behaviour = setup
    run_id, worker = await _running(app, behaviour)
    registered = store.registrations
    # what a reaper does to a worker it believes dead
    await store.expire_worker(worker.id, utcnow())
    lost = AttemptOutcome(
        succeeded=False, failure=Failure(kind=FailureKind.WORKER_LOST, message="x")
    )
    assert await store.finish_attempt(run_id, 1, worker.id, lost, utcnow(), None) is not None
    store.beat.set()
    with caplog.at_level(logging.WARNING, logger="mcpexec.worker"):
        await asyncio.wait_for(worker._heartbeat(), BOUND_S)
    assert "1 attempt(s) were reclaimed" in caplog.text
    assert store.registrations == registered + 1
    # the reclaimed attempt was told to stop (its cancel event fired)
    await asyncio.wait_for(asyncio.gather(*worker._tasks), BOUND_S)
    assert worker.running == 0
