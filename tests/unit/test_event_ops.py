"""``App.event_log`` over the memory store: many live readers share one tail of the log, yet
each gets exactly its own scope's events, all of them, in order; a reader far behind reads the
store; pruned ids are refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mcpexec.app import App, Principal
from mcpexec.errors import EventsExpired
from mcpexec.executor.fake import FakeExecutor
from mcpexec.models import DEFAULT_RETRY, ExecSpec
from mcpexec.settings import Settings
from mcpexec.store.base import NewRun, TenantRecord
from mcpexec.store.blobs import FileBlobStore
from mcpexec.store.memory import MemoryStore

pytestmark = pytest.mark.anyio

ADMIN = Principal("t0", "admin", "admin", "default")
ACME = Principal("t1", "acme", "viewer", "acme")
SUBMITTER = Principal("t2", "sub", "submitter", "default", principal_id="p-sub")


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    settings = Settings(home=tmp_path, events_poll_s=0.05)
    app = App(settings, MemoryStore(), FakeExecutor(), FileBlobStore(tmp_path / "artifacts"))
    await app.open()
    await app.store.create_tenant(TenantRecord("acme", datetime.now(UTC)))
    yield app
    await asyncio.wait_for(app.close(), 10)


async def _enqueue(app: App, run_id: str, tenant: str, owner: str | None = None) -> None:
    new = NewRun(
        id=run_id,
        tenant=tenant,
        spec=ExecSpec(command=["true"]),
        retry=DEFAULT_RETRY,
        priority=0,
        labels={},
        created_at=datetime.now(UTC),
        owner=owner,
    )
    await app.store.enqueue(new)
    app.events.log_changed()


async def _collect(app: App, who: Principal, after: int, want: int) -> list[str]:
    got: list[str] = []
    async for batch in app.event_log.follow(who, after, limit=want, timeout_s=20):
        got += [e.subject for e in batch.events]
    return got


async def test_live_readers_share_the_tail_and_keep_their_scope(app: App) -> None:
    start = await app.event_log.start(ADMIN, None)
    admins = [asyncio.create_task(_collect(app, ADMIN, start, 30)) for _ in range(20)]
    acmes = [asyncio.create_task(_collect(app, ACME, start, 10)) for _ in range(20)]
    own = asyncio.create_task(_collect(app, SUBMITTER, start, 5))
    await asyncio.sleep(0)
    expected_all: list[str] = []
    expected_acme: list[str] = []
    expected_own: list[str] = []
    for i in range(30):
        tenant = "acme" if i % 3 == 0 else "default"
        owner = "p-sub" if i % 3 == 1 and len(expected_own) < 5 else None
        await _enqueue(app, f"r{i}", tenant, owner)
        expected_all.append(f"r{i}")
        if tenant == "acme":
            expected_acme.append(f"r{i}")
        if owner:
            expected_own.append(f"r{i}")
    for task in admins:
        assert await task == expected_all
    for task in acmes:
        assert await task == expected_acme
    assert await own == expected_own


async def test_a_reader_behind_the_tail_reads_the_store(app: App) -> None:
    for i in range(5):
        await _enqueue(app, f"old{i}", "default")
    start = await app.event_log.start(ADMIN, None)
    live = asyncio.create_task(_collect(app, ADMIN, start, 1))
    await asyncio.sleep(0)
    await _enqueue(app, "new", "default")
    assert await live == ["new"]
    # From the start of the log: before the tail, so from the store, then on into the tail.
    assert await _collect(app, ADMIN, 0, 6) == [*(f"old{i}" for i in range(5)), "new"]


async def test_a_pruned_id_is_refused(app: App) -> None:
    for i in range(5):
        await _enqueue(app, f"r{i}", "default")
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    await app.store.prune_events(100, tomorrow)
    with pytest.raises(EventsExpired):
        await app.event_log.start(ADMIN, 1)
    with pytest.raises(EventsExpired):
        await app.event_log.wait(ADMIN, 1, 0.1)
    assert (await app.event_log.start(ADMIN, 0)) == 0
