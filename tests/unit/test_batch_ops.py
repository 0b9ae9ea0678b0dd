"""The batch submit's domain logic (``batch_ops``) on the in-memory store: what a batch adds to
single submits (the tenant's limits read once, the storage budget for every item, the index
of each refusal, the wake-up), the rest being the acceptance tests' over a real serve."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mcpexec.app import App, Principal
from mcpexec.errors import (
    BatchRefused,
    BatchTooLarge,
    InvalidRequest,
    McpexecError,
    StorageQuotaExceeded,
)
from mcpexec.executor.fake import FakeExecutor
from mcpexec.models import RunFilter, RunRequest, RunStatus, utcnow
from mcpexec.settings import Settings
from mcpexec.store.base import TenantRecord
from mcpexec.store.blobs import FileBlobStore
from mcpexec.store.memory import MemoryStore

pytestmark = pytest.mark.anyio

ADMIN = Principal("t0", "test", "admin", "default")
BOUND_S = 10.0


async def _app(tmp_path: Path, **settings: Any) -> App:
    values: dict[str, Any] = {"home": tmp_path, "poll_s": 0.05, **settings}
    app = App(Settings(**values), MemoryStore(), FakeExecutor(), FileBlobStore(tmp_path / "a"))
    await app.open()
    return app


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    app = await _app(tmp_path)
    yield app
    await asyncio.wait_for(app.close(), BOUND_S)


def req(**body: object) -> RunRequest:
    return RunRequest.model_validate(body)


async def test_items_keep_their_index_and_valid_ones_run(app: App) -> None:
    parse_error = InvalidRequest("command: not a list")
    items: list[RunRequest | McpexecError] = [
        req(command=["echo", "a"]),
        parse_error,
        req(command=["echo", "b"], labels={"mcp/x": "1"}),
        req(command=["echo", "c"]),
    ]
    results = await app.batch.submit_many(items, ADMIN)
    assert results[1] is parse_error
    assert isinstance(results[2], InvalidRequest)
    ok = [r for r in results if isinstance(r, tuple)]
    assert [created for _, created in ok] == [True, True]
    await app.start_background(workers=1, reaper=False)
    for run, _ in ok:
        assert (await app.wait(run.id, ADMIN, BOUND_S)).status == RunStatus.COMPLETED
    with pytest.raises(BatchRefused) as refused:
        await app.batch.submit_many(items, ADMIN, all_or_nothing=True)
    assert [i for i, _ in refused.value.failures] == [1, 2]
    assert len((await app.list_runs(ADMIN, RunFilter())).runs) == 2


async def test_the_tenant_limits_apply_to_each_item(app: App) -> None:
    await app.store.create_tenant(TenantRecord("acme", utcnow(), max_runtime_s=60))
    acme = Principal("t1", "a", "submitter", "acme", "p1")
    items: list[RunRequest | McpexecError] = [
        req(command=["true"], timeout_s=30),
        req(command=["true"], timeout_s=120),  # over the tenant's max_runtime_s
        req(command=["true"]),
    ]
    results = await app.batch.submit_many(items, acme)
    assert isinstance(results[1], InvalidRequest)
    assert isinstance(results[0], tuple)
    assert isinstance(results[2], tuple)
    assert [results[0][0].spec.timeout_s, results[2][0].spec.timeout_s] == [30, 60]
    assert {results[0][0].owner, results[2][0].owner} == {"p1"}


async def test_over_a_thousand_is_refused_before_anything(app: App) -> None:
    with pytest.raises(BatchTooLarge) as refused:
        await app.batch.submit_many([req(command=["true"])] * 1001, ADMIN)
    assert (refused.value.code, refused.value.http_status) == ("batch_too_large", 422)
    assert (await app.list_runs(ADMIN, RunFilter())).runs == []


async def test_a_used_up_storage_budget_refuses_every_item(tmp_path: Path) -> None:
    app = await _app(tmp_path, max_storage_mb=1 / 1024)
    try:
        run, _ = await app.submit(req(command=["echo", "x" * 2000]), ADMIN)
        await app.start_background(workers=1, reaper=False)
        assert (await app.wait(run.id, ADMIN, BOUND_S)).status == RunStatus.COMPLETED
        results = await app.batch.submit_many([req(command=["true"])] * 3, ADMIN)
        assert all(isinstance(r, StorageQuotaExceeded) for r in results)
        with pytest.raises(BatchRefused) as refused:
            await app.batch.submit_many([req(command=["true"])] * 2, ADMIN, all_or_nothing=True)
        assert [i for i, _ in refused.value.failures] == [0, 1]
    finally:
        await asyncio.wait_for(app.close(), BOUND_S)
