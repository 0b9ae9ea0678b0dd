"""``App.begin_shutdown``: the first step of a shutdown, before the HTTP drain (issue 8)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mcpexec.app import App, Principal
from mcpexec.executor.fake import FakeExecutor
from mcpexec.models import LogChunk, Run, RunRequest, RunStatus
from mcpexec.settings import Settings
from mcpexec.store.blobs import FileBlobStore
from mcpexec.store.memory import MemoryStore

pytestmark = pytest.mark.anyio

ADMIN = Principal("t0", "test", "admin", "default")
BOUND_S = 10.0


async def test_waiters_end_with_the_current_state_and_nothing_is_claimed(
    tmp_path: Path,
) -> None:
    # No workers yet: the run stays pending while the waiters wait.
    settings = Settings(home=tmp_path, poll_s=0.05, heartbeat_s=0.05)
    app = App(settings, MemoryStore(), FakeExecutor(), FileBlobStore(tmp_path / "a"))
    await app.open()
    try:
        run, _ = await app.submit(RunRequest.model_validate({"command": ["echo", "x"]}), ADMIN)
        waiter = asyncio.create_task(app.wait(run.id, ADMIN, 300))

        async def follow() -> list[LogChunk | Run]:
            return [item async for item in app.follow_logs(run.id, ADMIN)]

        follower = asyncio.create_task(follow())
        await asyncio.sleep(0)  # both are waiting on the run now
        await app.start_background(workers=1, reaper=False)
        app.begin_shutdown()  # in the same step as the start: the worker never claims
        waited = await asyncio.wait_for(waiter, BOUND_S)
        assert waited.status == RunStatus.PENDING
        items = await asyncio.wait_for(follower, BOUND_S)
        assert len(items) == 1
        assert isinstance(items[0], Run)
        assert items[0].status == RunStatus.PENDING
        # a wait that starts now returns at once too
        late = await asyncio.wait_for(app.wait(run.id, ADMIN, 300), BOUND_S)
        assert late.status == RunStatus.PENDING
    finally:
        await asyncio.wait_for(app.close(), BOUND_S)
    assert (await app.store.get_run(run.id)) is not None
    assert (await app.store.attempts(run.id)) == []
