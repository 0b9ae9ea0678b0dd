"""The worker wakes when a delayed run or a retry comes due, not only on its next poll.

``poll_s`` is set far beyond every wait below (600 s): a run that starts within the bounded wait
was started by the due-time wake-up, since no poll could have happened."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from mcpexec.app import App, Principal
from mcpexec.executor.fake import FakeExecutor
from mcpexec.models import RunRequest, RunStatus, utcnow
from mcpexec.settings import Settings
from mcpexec.store.blobs import FileBlobStore
from mcpexec.store.memory import MemoryStore

pytestmark = pytest.mark.anyio

ADMIN = Principal("t0", "test", "admin", "default")
NEVER_POLL_S = 600.0
BOUND_S = 10.0


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    settings = Settings(home=tmp_path, poll_s=NEVER_POLL_S, heartbeat_s=0.05, reaper_s=0.05)
    app = App(settings, MemoryStore(), FakeExecutor(), FileBlobStore(tmp_path / "artifacts"))
    await app.open()
    await app.start_background(workers=1)
    yield app
    await asyncio.wait_for(app.close(), 10)


async def test_a_sub_second_retry_delay_does_not_wait_for_the_poll(app: App) -> None:
    body = RunRequest.model_validate(
        {"command": ["exit", "3"], "retry": {"max_attempts": 2, "delay_s": 0.3, "jitter": False}}
    )
    run, _ = await app.submit(body, ADMIN)
    done = await app.wait(run.id, ADMIN, BOUND_S)
    assert done.status == RunStatus.FAILED
    attempts = await app.attempts(run.id, ADMIN)
    assert [a.number for a in attempts] == [1, 2]
    first, second = attempts
    assert first.finished_at is not None
    # causality, not speed: the retry started only once its delay had passed
    assert second.started_at >= first.finished_at + timedelta(seconds=0.3)


async def test_a_delayed_run_starts_when_due_without_a_poll(app: App) -> None:
    run_at = utcnow() + timedelta(seconds=0.3)
    body = RunRequest.model_validate({"command": ["echo", "later"], "run_at": run_at})
    run, _ = await app.submit(body, ADMIN)
    done = await app.wait(run.id, ADMIN, BOUND_S)
    assert done.status == RunStatus.COMPLETED
    assert done.started_at is not None
    assert done.started_at >= run_at
