"""The App and Worker on the in-memory store with a scripted executor: domain logic only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mcpexec.app import App, Principal
from mcpexec.errors import Forbidden, RunNotFound, StoreError, Unauthorized
from mcpexec.executor.base import ExecResult
from mcpexec.executor.fake import FakeExecutor
from mcpexec.models import DEFAULT_RETRY, ExecSpec, RunFilter, RunRequest, RunStatus, Stream, utcnow
from mcpexec.settings import Settings
from mcpexec.store.base import NewRun
from mcpexec.store.blobs import FileBlobStore
from mcpexec.store.memory import MemoryStore

pytestmark = pytest.mark.anyio

ADMIN = Principal("t0", "test", "admin", "default")


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    settings = Settings(home=tmp_path, poll_s=0.05, heartbeat_s=0.05, reaper_s=0.05)
    app = App(settings, MemoryStore(), FakeExecutor(), FileBlobStore(tmp_path / "artifacts"))
    await app.open()
    await app.start_background(workers=2)
    yield app
    await asyncio.wait_for(app.close(), 10)


def req(**body: object) -> RunRequest:
    return RunRequest.model_validate(body)


async def test_submit_runs_and_stores_output(app: App) -> None:
    run, created = await app.submit(req(command=["echo", "42"]), ADMIN)
    assert created
    assert run.status == RunStatus.PENDING
    done = await app.wait(run.id, ADMIN, 5)
    assert done.status == RunStatus.COMPLETED
    data, _, complete = await app.read_logs(run.id, ADMIN, Stream.STDOUT, 0, 100)
    assert data == b"42\n"
    assert complete


async def test_deterministic_failure_retried_to_max_attempts(app: App) -> None:
    body = req(command=["exit", "2"], retry={"max_attempts": 3, "delay_s": 0})
    run, _ = await app.submit(body, ADMIN)
    done = await app.wait(run.id, ADMIN, 5)
    assert done.status == RunStatus.FAILED
    assert done.failure is not None
    assert done.failure.kind == "exit_code"
    attempts = await app.attempts(run.id, ADMIN)
    assert [a.number for a in attempts] == [1, 2, 3]
    assert all(a.exit_code == 2 for a in attempts)


async def test_idempotent_submit(app: App) -> None:
    first, created1 = await app.submit(req(command=["echo"], idempotency_key="k"), ADMIN)
    second, created2 = await app.submit(req(command=["echo"], idempotency_key="k"), ADMIN)
    assert created1
    assert not created2
    assert first.id == second.id


async def test_cancel_running_run(app: App) -> None:
    run, _ = await app.submit(req(command=["block"]), ADMIN)
    for _ in range(100):
        if (await app.get(run.id, ADMIN)).status == RunStatus.RUNNING:
            break
        await app.events.wait_run(run.id, 0.05)
    await app.cancel(run.id, ADMIN)
    done = await app.wait(run.id, ADMIN, 5)
    assert done.status == RunStatus.CANCELLED


async def test_rerun_copies_the_spec(app: App) -> None:
    run, _ = await app.submit(req(command=["echo", "x"], labels={"a": "b"}, priority="high"), ADMIN)
    await app.wait(run.id, ADMIN, 5)
    again = await app.rerun(run.id, ADMIN)
    assert again.id != run.id
    assert again.rerun_of == run.id
    assert again.spec == run.spec
    assert again.labels == {"a": "b"}
    assert again.priority == 10


async def test_unknown_run_and_tenant_isolation(app: App) -> None:
    with pytest.raises(RunNotFound):
        await app.get("nope", ADMIN)
    other = Principal("t1", "other", "submitter", "acme")
    run, _ = await app.submit(req(command=["echo"]), ADMIN)
    with pytest.raises(RunNotFound):
        await app.get(run.id, other)
    mine, _ = await app.submit(req(command=["echo"]), other)
    page = await app.list_runs(other, RunFilter())
    assert [r.id for r in page.runs] == [mine.id]


async def test_tokens(app: App, tmp_path: Path) -> None:
    token = await app.ensure_admin_token(tmp_path / "token")
    assert (tmp_path / "token").stat().st_mode & 0o777 == 0o600
    assert await app.ensure_admin_token(tmp_path / "token") == token
    principal = await app.authenticate(token)
    assert principal.is_admin
    with pytest.raises(Unauthorized):
        await app.authenticate("wrong")
    with pytest.raises(Unauthorized):
        await app.authenticate(None)
    viewer = await app.authenticate(await app.create_token("v", role="viewer"))
    with pytest.raises(Forbidden):
        await app.submit(req(command=["echo"]), viewer)


async def test_retention_purge_removes_runs_logs_and_artifacts(tmp_path: Path) -> None:
    from mcpexec.reaper import Reaper, ReaperOptions

    settings = Settings(home=tmp_path, retention_days=1e-9)
    store = MemoryStore()
    blobs = FileBlobStore(tmp_path / "artifacts")
    app = App(settings, store, FakeExecutor(), blobs)
    await app.open()
    await app.start_background(workers=1, reaper=False)
    try:
        run, _ = await app.submit(req(command=["echo", "old"]), ADMIN)
        assert (await app.wait(run.id, ADMIN, 5)).status == RunStatus.COMPLETED
        pending, _ = await app.submit(req(command=["echo"], run_at="2999-01-01T00:00:00Z"), ADMIN)
        (tmp_path / "artifacts" / run.id).mkdir(parents=True)
        purged = await Reaper(
            store, blobs, app.events, ReaperOptions.from_settings(settings)
        ).purge()
        assert purged == 1
        with pytest.raises(RunNotFound):
            await app.get(run.id, ADMIN)
        assert not (tmp_path / "artifacts" / run.id).exists()
        assert (await app.get(pending.id, ADMIN)).status == RunStatus.PENDING
    finally:
        await app.close()


async def test_executor_error_fails_the_attempt_at_once(tmp_path: Path) -> None:
    async def broken(*_: object) -> ExecResult:
        # (a full disk is a store_error: tests/unit/test_worker_store_failure.py)
        raise OSError(13, "Permission denied: the executor's own directory")

    settings = Settings(home=tmp_path, poll_s=0.05)
    app = App(settings, MemoryStore(), FakeExecutor(broken), FileBlobStore(tmp_path / "a"))
    await app.open()
    await app.start_background(workers=1, reaper=False)
    try:
        run, _ = await app.submit(req(command=["echo"]), ADMIN)
        done = await app.wait(run.id, ADMIN, 5)
        assert done.status == RunStatus.FAILED
        assert done.failure is not None
        assert done.failure.kind == "spawn_error"
        assert "Permission denied" in done.failure.message
    finally:
        await app.close()


class FlakyClaimStore(MemoryStore):
    """Fails the first claims, as a locked database would."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def claim(self, *args: Any, **kwargs: Any) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise StoreError("SQLite: database is locked")
        return await super().claim(*args, **kwargs)


async def test_worker_survives_failing_claims(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, poll_s=0.05)
    store = FlakyClaimStore(failures=3)
    app = App(settings, store, FakeExecutor(), FileBlobStore(tmp_path / "a"))
    await app.open()
    await app.start_background(workers=1, reaper=False)
    try:
        run, _ = await app.submit(req(command=["echo", "ok"]), ADMIN)
        assert (await app.wait(run.id, ADMIN, 5)).status == RunStatus.COMPLETED
        assert store.failures == 0
    finally:
        await app.close()


def test_an_exec_result_becomes_the_attempt_outcome_field_for_field() -> None:
    from dataclasses import fields

    from mcpexec.models import Failure, FailureKind
    from mcpexec.store.base import AttemptOutcome
    from mcpexec.worker import outcome_of

    failure = Failure(kind=FailureKind.WORKER_LOST, message="interrupted")
    result = ExecResult(
        succeeded=False,
        exit_code=3,
        signal=9,
        failure=Failure(kind=FailureKind.SIGNAL, message="killed"),
        output_truncated=True,
        result={"a": 1},
        isolation=None,
        limits={"memory_mb": {"value": 64}},
    )
    outcome = outcome_of(result, failure=failure, isolation="none")
    expected = {f.name: getattr(result, f.name) for f in fields(AttemptOutcome)}
    expected.update(failure=failure, isolation="none")
    assert {f.name: getattr(outcome, f.name) for f in fields(AttemptOutcome)} == expected
    assert outcome.exit_code == 3
    assert outcome.limits == {"memory_mb": {"value": 64}}


async def test_worker_slots_count_this_process_workers(app: App) -> None:
    slots = app.worker_slots()
    assert (slots.total, slots.busy) == (2, 0)
    run, _ = await app.submit(req(command=["block"]), ADMIN)
    for _ in range(100):
        if app.worker_slots().busy == 1:
            break
        await app.events.wait_run(run.id, 0.05)
    assert app.worker_slots().busy == 1
    await app.cancel(run.id, ADMIN)
    assert (await app.wait(run.id, ADMIN, 5)).status == RunStatus.CANCELLED


class NotifyingStore(MemoryStore):
    """A store whose wake-up reaches across processes (as a PostgreSQL dialect's would); it
    tells the test when a claim came back empty (the worker is about to idle)."""

    wakes_across_processes = True

    def __init__(self) -> None:
        super().__init__()
        self.found_nothing = asyncio.Event()

    async def claim(self, *args: Any, **kwargs: Any) -> Any:
        claims = await super().claim(*args, **kwargs)
        if not claims:
            self.found_nothing.set()
        return claims


async def test_a_store_that_notifies_wakes_the_worker_without_the_event_hub(
    tmp_path: Path,
) -> None:
    # poll_s far beyond the wait below: only the store's own wake-up can start the run, as it
    # would for a run enqueued by another process (which never touches our EventHub).
    settings = Settings(home=tmp_path, poll_s=600)
    store = NotifyingStore()
    app = App(settings, store, FakeExecutor(), FileBlobStore(tmp_path / "a"))
    await app.open()
    await app.start_background(workers=1, reaper=False)
    try:
        await asyncio.wait_for(store.found_nothing.wait(), 10)
        new = NewRun(
            id="from-elsewhere",
            tenant="default",
            spec=ExecSpec(command=["echo", "hi"]),
            retry=DEFAULT_RETRY,
            priority=0,
            labels={},
            created_at=utcnow(),
        )
        await store.enqueue(new)  # straight into the store: no EventHub announcement
        assert (await app.wait(new.id, ADMIN, 10)).status == RunStatus.COMPLETED
    finally:
        await app.close()
