"""The worker: claims runs when a slot is free, executes them, reports fenced results.

One ``Worker`` has ``concurrency`` slots. It claims only as many runs as it has free slots (never
holds work it cannot start), renews the lease of every attempt it holds by heartbeat, and learns
from the heartbeat which runs were cancelled or taken from it. Graceful shutdown stops claiming,
lets running attempts finish within a grace period, then kills the rest and requeues them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import BinaryIO

from mcpexec.events import EventHub
from mcpexec.executor.base import EffectiveLimits, ExecRequest, ExecResult, Executor
from mcpexec.models import Artifact, ExecSpec, Failure, FailureKind, Progress, Stream, utcnow
from mcpexec.retry import next_attempt_at
from mcpexec.settings import Settings
from mcpexec.store.base import AttemptOutcome, Claim, Store, WorkerInfo
from mcpexec.store.blobs import BlobStore

log = logging.getLogger(__name__)


def _pick(requested: int | None, default: int | None, maximum: int | None) -> int | None:
    value = requested if requested is not None else default
    if value is not None and maximum is not None:
        value = min(value, maximum)
    return value


def effective_limits(spec: ExecSpec, settings: Settings) -> EffectiveLimits:
    """The spec's limits with server defaults filled in and server maxima applied."""
    lim, s = spec.limits, settings
    timeout = min(spec.timeout_s or s.default_timeout_s, s.max_timeout_s)
    return EffectiveLimits(
        timeout_s=timeout,
        cpu_s=_pick(lim.cpu_s, s.cpu_s, s.max_cpu_s),
        memory_mb=_pick(lim.memory_mb, s.memory_mb, s.max_memory_mb),
        file_size_mb=min(lim.file_size_mb or s.file_size_mb, s.max_file_size_mb),
        open_files=min(lim.open_files or s.open_files, s.max_open_files),
        max_output_bytes=lim.max_output_bytes or s.max_output_bytes,
        max_artifacts=s.max_artifacts,
        max_artifact_bytes=s.max_artifact_bytes,
        kill_grace_s=s.kill_grace_s,
        pids=_pick(lim.pids, s.pids, s.max_pids),
        disk_mb=_pick(lim.disk_mb, s.disk_mb, s.max_disk_mb),
    )


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class _AttemptSink:
    """Forwards what the executor reports into the store, fenced on this attempt."""

    def __init__(self, worker: Worker, claim: Claim, lost: asyncio.Event) -> None:
        self._worker = worker
        self._run_id = claim.run.id
        self._attempt = claim.attempt
        self._lost = lost
        self._artifact_bytes = 0

    async def output(self, stream: Stream, data: bytes) -> None:
        w = self._worker
        offset = await w.store.append_log(self._run_id, self._attempt, w.id, stream, data)
        if offset is None:
            self._lost.set()  # fenced out: the run is no longer ours, stop it
        w.events.run_changed(self._run_id)

    async def progress(self, progress: Progress) -> None:
        w = self._worker
        if await w.store.record_progress(self._run_id, self._attempt, w.id, progress):
            w.events.run_changed(self._run_id)

    async def artifact(self, name: str, file: BinaryIO, size: int) -> None:
        w = self._worker
        budget = w.settings.max_artifact_bytes - self._artifact_bytes
        if budget <= 0:
            return
        stored, sha = await w.blobs.put(self._run_id, name, file, budget)
        self._artifact_bytes += stored
        record = Artifact(
            run_id=self._run_id,
            name=name,
            size=stored,
            sha256=sha,
            attempt=self._attempt,
            created_at=utcnow(),
        )
        await w.store.add_artifact(record, w.id)


@dataclass
class _Held:
    attempt: int
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    shutdown: bool = False


class Worker:
    def __init__(
        self,
        store: Store,
        executor: Executor,
        blobs: BlobStore,
        events: EventHub,
        settings: Settings,
        concurrency: int,
        worker_id: str | None = None,
    ) -> None:
        self.store = store
        self.executor = executor
        self.blobs = blobs
        self.events = events
        self.settings = settings
        self.concurrency = concurrency
        self.id = worker_id or new_worker_id()
        self._held: dict[str, _Held] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._rng = random.Random()  # noqa: S311 - jitter, not security

    # -- lifecycle ----------------------------------------------------------------------------
    async def run(self) -> None:
        """Claim and execute until ``stop()``; then drain as ``stop()`` describes."""
        await self._register()
        self.events.add_cancel_listener(self._on_cancel)
        heartbeat = asyncio.create_task(self._heartbeat_loop(), name="worker-heartbeat")
        try:
            await self._claim_loop()
        finally:
            self.events.remove_cancel_listener(self._on_cancel)
            await self._drain()
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            await self.store.remove_worker(self.id)

    async def _register(self) -> None:
        now = utcnow()
        info = WorkerInfo(self.id, socket.gethostname(), os.getpid(), self.concurrency, now, now)
        await self.store.register_worker(info)

    def stop(self) -> None:
        self._stopping.set()
        self._slot_freed.set()
        self.events.work_available()

    async def _drain(self) -> None:
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=self.settings.shutdown_grace_s)
        if pending:
            log.warning("shutdown: interrupting %d running attempt(s)", len(pending))
            for held in self._held.values():
                held.shutdown = True
                held.cancel.set()
            await asyncio.wait(pending)

    # -- claiming -----------------------------------------------------------------------------
    async def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            free = self.concurrency - len(self._tasks)
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            now = utcnow()
            lease = now + timedelta(seconds=self.settings.lease_s)
            try:
                claims = await self.store.claim(self.id, free, now, lease)
            except Exception:
                # A store that is briefly busy or unavailable must not end the worker: nothing
                # was claimed (the claim is one transaction), so try again after a poll.
                log.exception("claim failed; retrying")
                await self.events.wait_for_work(self.settings.poll_s)
                continue
            for claim in claims:
                self._start(claim)
            if not claims:
                await self.events.wait_for_work(self.settings.poll_s)

    def _start(self, claim: Claim) -> None:
        self._held[claim.run.id] = _Held(claim.attempt)
        task = asyncio.create_task(self._execute(claim), name=f"run-{claim.run.id}")
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slot_freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("attempt task crashed", exc_info=task.exception())

    def _on_cancel(self, run_id: str) -> None:
        held = self._held.get(run_id)
        if held is not None:
            held.cancel.set()

    # -- executing ----------------------------------------------------------------------------
    async def _execute(self, claim: Claim) -> None:
        run = claim.run
        held = self._held[run.id]
        lost = asyncio.Event()
        lost_watch = asyncio.create_task(self._relay(lost, held.cancel))
        self.events.run_changed(run.id)
        try:
            request = ExecRequest(
                run.id, claim.attempt, run.spec, effective_limits(run.spec, self.settings)
            )
            sink = _AttemptSink(self, claim, lost)
            try:
                result = await self.executor.execute(request, sink, held.cancel)
            except Exception as exc:
                # The executor promises not to raise for anything the task does; if it still
                # does (a bug, a full disk), report the attempt now instead of letting the lease
                # run out. Its process tree is already dead (the executor's own cleanup).
                log.exception("run %s attempt %d: executor error", run.id, claim.attempt)
                failure = Failure(kind=FailureKind.SPAWN_ERROR, message=f"executor error: {exc}")
                result = ExecResult(succeeded=False, failure=failure)
            await self._report(claim, result, shutdown=held.shutdown)
        finally:
            lost_watch.cancel()
            self._held.pop(run.id, None)
            self.events.run_changed(run.id)

    @staticmethod
    async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
        await source.wait()
        target.set()

    async def _report(self, claim: Claim, result: ExecResult, *, shutdown: bool) -> None:
        now = utcnow()
        failure = result.failure
        retry_at: datetime | None = None
        if shutdown and not result.succeeded:
            # Interrupted by our own shutdown, not by the task: always leave it retryable.
            failure = Failure(
                kind=FailureKind.WORKER_LOST, message="interrupted by worker shutdown"
            )
            retry_at = now
        elif failure is not None:
            retry_at = next_attempt_at(claim.run.retry, failure.kind, claim.attempt, now, self._rng)
        outcome = AttemptOutcome(
            succeeded=result.succeeded,
            exit_code=result.exit_code,
            signal=result.signal,
            failure=failure,
            output_truncated=result.output_truncated,
            result=result.result,
            isolation=result.isolation or self.executor.isolation,
            limits=result.limits,
        )
        updated = await self.store.finish_attempt(
            claim.run.id, claim.attempt, self.id, outcome, now, retry_at
        )
        if updated is None:
            log.warning(
                "run %s attempt %d: fenced out, result dropped", claim.run.id, claim.attempt
            )
        elif retry_at is not None:
            self.events.work_available()

    # -- heartbeat ----------------------------------------------------------------------------
    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            try:
                await self._heartbeat()
            except Exception:
                # A busy or briefly unavailable store must not kill the worker: the lease is
                # long enough to survive several missed beats.
                log.exception("heartbeat failed")

    async def _heartbeat(self) -> None:
        now = utcnow()
        held = [(run_id, h.attempt) for run_id, h in self._held.items()]
        lease = now + timedelta(seconds=self.settings.lease_s)
        reply = await self.store.heartbeat(self.id, held, now, lease)
        for run_id in reply.cancel | reply.lost:
            self._on_cancel(run_id)
        if reply.lost:
            # Someone declared us dead (a long pause, a clock jump): our attempts were reaped.
            # Stop them (above) and register again so our future claims are attributed.
            log.warning("%d attempt(s) were reclaimed from this worker", len(reply.lost))
            await self._register()

    @property
    def running(self) -> int:
        return len(self._tasks)
