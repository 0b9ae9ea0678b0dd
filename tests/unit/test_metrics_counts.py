"""The process counters where the worker is not the one finishing: the reaper's worker_lost
attempts and retries, a pending run cancelled (App), counted once and on the store's word."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from mcpexec.app import App, Principal
from mcpexec.events import EventHub
from mcpexec.executor.fake import FakeExecutor
from mcpexec.metrics import Metrics
from mcpexec.models import ExecSpec, RetryPolicy, RunRequest, utcnow
from mcpexec.reaper import Reaper, ReaperOptions
from mcpexec.settings import Settings
from mcpexec.store.base import NewRun
from mcpexec.store.blobs import FileBlobStore
from mcpexec.store.memory import MemoryStore

pytestmark = pytest.mark.anyio

ADMIN = Principal("t0", "test", "admin", "default")
SHELL = {"tenant": "default", "kind": "shell"}


def count(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_the_reaper_counts_lost_attempts_retries_and_the_failed_run(tmp_path: Path) -> None:
    store = MemoryStore()
    await store.open()
    metrics = Metrics()
    blobs = FileBlobStore(tmp_path / "artifacts")
    settings = Settings(home=tmp_path)
    options = ReaperOptions.from_settings(settings)
    reaper = Reaper(store, blobs, EventHub(), options, metrics=metrics)
    retry = RetryPolicy(max_attempts=2, delay_s=0.0, jitter=False)
    new = NewRun(
        id="r1", tenant="default", spec=ExecSpec(shell="true"), retry=retry, priority=0,
        labels={}, created_at=utcnow(),
    )  # fmt: skip
    await store.enqueue(new)
    for _ in range(2):  # two attempts, each lost (its lease ran out)
        now = utcnow()
        assert await store.claim("gone", 1, now, now - timedelta(seconds=1))
        assert await reaper.reap() == 1
    assert await reaper.reap() == 0  # nothing left: nothing counted twice
    lost = {**SHELL, "outcome": "worker_lost"}
    assert count(metrics, "mcpexec_attempts_total", **lost) == 2
    assert count(metrics, "mcpexec_retries_total", **SHELL) == 1
    failed = {**SHELL, "status": "failed"}
    assert count(metrics, "mcpexec_runs_finished_total", **failed) == 1
    kind = {**SHELL, "failure_kind": "worker_lost"}
    assert count(metrics, "mcpexec_run_failures_total", **kind) == 1
    assert count(metrics, "mcpexec_run_duration_seconds_count", **failed) == 1
    await store.close()


async def test_a_pending_run_cancelled_is_finished_once(tmp_path: Path) -> None:
    app = App(Settings(home=tmp_path), MemoryStore(), FakeExecutor(), FileBlobStore(tmp_path))
    await app.open()
    try:
        request = RunRequest.model_validate({"shell": "true", "run_at": "2999-01-01T00:00:00Z"})
        run, _ = await app.submit(request, ADMIN)
        await app.cancel(run.id, ADMIN)
        await app.cancel(run.id, ADMIN)  # idempotent: not a second finish
        cancelled = {**SHELL, "status": "cancelled"}
        assert count(app.metrics, "mcpexec_runs_submitted_total", **SHELL) == 1
        assert count(app.metrics, "mcpexec_runs_finished_total", **cancelled) == 1
        # a cancelled run never started: no duration, no queue wait
        assert count(app.metrics, "mcpexec_run_duration_seconds_count", **cancelled) == 0
        assert count(app.metrics, "mcpexec_queue_wait_seconds_count", tenant="default") == 0
    finally:
        await asyncio.wait_for(app.close(), 10)
