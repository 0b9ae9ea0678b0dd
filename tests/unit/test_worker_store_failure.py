"""A store that refuses writes (a full disk) must not hang an attempt (issue 8, item 2).

``FullStore`` fails every write while ``full`` is set, as SQLite does with "database or disk is
full". A chatty attempt is stopped at once, its slot freed while the disk is still full, and
once space returns the attempt is recorded as ``store_error`` and retried by default."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mcpexec.app import App, Principal
from mcpexec.errors import StoreError
from mcpexec.executor.base import ExecRequest, ExecResult, ExecSink
from mcpexec.executor.fake import FakeExecutor
from mcpexec.models import Failure, FailureKind, RunRequest, RunStatus, Stream
from mcpexec.settings import Settings
from mcpexec.store.blobs import FileBlobStore
from mcpexec.store.memory import MemoryStore

pytestmark = pytest.mark.anyio

ADMIN = Principal("t0", "test", "admin", "default")
BOUND_S = 10.0
FULL = "SQLite: database or disk is full"


class FullStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.full = False
        self.refused = asyncio.Event()

    def _check(self) -> None:
        if self.full:
            self.refused.set()
            raise StoreError(FULL)

    async def append_log(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return await super().append_log(*args, **kwargs)

    async def finish_attempt(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return await super().finish_attempt(*args, **kwargs)

    async def heartbeat(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return await super().heartbeat(*args, **kwargs)

    async def claim(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return await super().claim(*args, **kwargs)


async def chatty(request: ExecRequest, sink: ExecSink, cancel: asyncio.Event) -> ExecResult:
    """Prints until stopped on the first attempt (like ``yes``); succeeds on the next."""
    if request.attempt > 1:
        await sink.output(Stream.STDOUT, b"second\n")
        return ExecResult(succeeded=True, exit_code=0)
    while not cancel.is_set():
        await sink.output(Stream.STDOUT, b"y\n" * 1000)
        await asyncio.sleep(0)
    failure = Failure(kind=FailureKind.CANCELLED, message="killed")
    return ExecResult(succeeded=False, signal=15, failure=failure)


async def running(app: App, run_id: str) -> None:
    """Until the worker holds the run (its claim and start announce it as a change)."""
    async with asyncio.timeout(BOUND_S):
        while app.worker_slots().busy != 1:
            await app.events.wait_run(run_id, 0.05)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[App, FullStore]]:
    settings = Settings(home=tmp_path, poll_s=0.05, heartbeat_s=0.05)
    store = FullStore()
    app = App(settings, store, FakeExecutor(chatty), FileBlobStore(tmp_path / "a"))
    await app.open()
    await app.start_background(workers=1, reaper=False)
    yield app, store
    store.full = False
    await asyncio.wait_for(app.close(), BOUND_S)


async def test_a_full_store_stops_the_attempt_frees_the_slot_and_recovers(
    setup: tuple[App, FullStore],
) -> None:
    app, store = setup
    run, _ = await app.submit(RunRequest.model_validate({"command": ["chatty"]}), ADMIN)
    await running(app, run.id)
    attempt_tasks = set(app.workers[0]._tasks)
    store.full = True
    await asyncio.wait_for(store.refused.wait(), BOUND_S)
    # the attempt is stopped and its slot freed while the store still refuses every write
    await asyncio.wait_for(asyncio.gather(*attempt_tasks), BOUND_S)
    assert app.worker_slots().busy == 0
    assert store.full
    store.full = False  # space returns: the report goes through, the default policy retries
    done = await app.wait(run.id, ADMIN, BOUND_S)
    assert done.status == RunStatus.COMPLETED
    first, second = await app.attempts(run.id, ADMIN)
    assert first.failure is not None
    assert first.failure.kind == FailureKind.STORE_ERROR
    assert "disk is full" in first.failure.message
    assert second.status == RunStatus.COMPLETED


async def test_a_disk_full_executor_error_is_a_store_error(tmp_path: Path) -> None:
    async def broken(*_: object) -> ExecResult:
        raise OSError(errno.ENOSPC, "No space left on device")

    settings = Settings(home=tmp_path, poll_s=0.05)
    app = App(settings, MemoryStore(), FakeExecutor(broken), FileBlobStore(tmp_path / "a"))
    await app.open()
    await app.start_background(workers=1, reaper=False)
    try:
        body = RunRequest.model_validate({"command": ["x"], "retry": {"max_attempts": 1}})
        run, _ = await app.submit(body, ADMIN)
        done = await app.wait(run.id, ADMIN, BOUND_S)
        assert done.failure is not None
        assert done.failure.kind == FailureKind.STORE_ERROR
        assert "No space left" in done.failure.message
    finally:
        await app.close()
