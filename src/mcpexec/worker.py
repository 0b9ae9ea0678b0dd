"""The worker: claims runs when a slot is free, executes them, reports fenced results.

One ``Worker`` has ``concurrency`` slots. It claims only as many runs as it has free slots (never
holds work it cannot start), renews the lease of every attempt it holds by heartbeat, and learns
from the heartbeat which runs were cancelled or taken from it. Graceful shutdown stops claiming,
lets running attempts finish within a grace period, then kills the rest and requeues them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import os
import random
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, BinaryIO

from mcpexec.errors import StoreError
from mcpexec.events import EventHub
from mcpexec.executor.base import EffectiveLimits, ExecRequest, ExecResult, Executor
from mcpexec.logfmt import bind_run
from mcpexec.metrics import Metrics
from mcpexec.models import (
    Artifact,
    ExecSpec,
    Failure,
    FailureKind,
    Progress,
    Run,
    Stream,
    utcnow,
)
from mcpexec.params import param_inputs
from mcpexec.retry import next_attempt_at
from mcpexec.settings import Settings
from mcpexec.store.base import AttemptOutcome, Claim, ClaimLimits, Store, WorkerInfo
from mcpexec.store.blobs import BlobStore
from mcpexec.tracing import AttemptSpan

log = logging.getLogger(__name__)

#: The reserved label a workflow step run carries its workspace in (issue 16).
WORKSPACE_LABEL = "mcp/workspace"

#: How often a worker polls when its store wakes it across processes (``Store``'s
#: ``wakes_across_processes``): only delayed runs and retries coming due rely on it.
NOTIFIED_POLL_S = 5.0


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


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """What a ``Worker`` needs from the configuration, and nothing more."""

    concurrency: int
    lease_s: float
    heartbeat_s: float
    poll_s: float
    shutdown_grace_s: float
    max_artifact_bytes: int
    #: The limits an attempt of ``spec`` runs under (server defaults and maxima applied).
    limits_for: Callable[[ExecSpec], EffectiveLimits]
    #: Running attempts per tenant when the tenant sets none (issue 10; ``None``: no limit).
    tenant_max_concurrent: int | None = None
    #: This worker's labels: it claims runs whose ``worker_labels`` are all among them (issue 13).
    worker_labels: frozenset[str] = frozenset()
    #: Labels this process adds while it runs, asked at every claim: one per MCP server its
    #: gateway has (``ToolsService.worker_labels``; a reload changes them; issue 14).
    extra_labels: Callable[[], frozenset[str]] | None = None

    def labels(self) -> frozenset[str]:
        extra = self.extra_labels() if self.extra_labels is not None else frozenset()
        return self.worker_labels | extra

    @classmethod
    def from_settings(cls, settings: Settings, concurrency: int) -> WorkerOptions:
        # Every other option is the setting of the same name.
        named: dict[str, Any] = {
            f.name: getattr(settings, f.name)
            for f in dataclasses.fields(cls)
            if f.name not in ("concurrency", "limits_for", "worker_labels", "extra_labels")
        }
        named["worker_labels"] = frozenset(settings.worker_labels)
        return cls(
            concurrency=concurrency,
            limits_for=partial(effective_limits, settings=settings),
            **named,
        )


#: What an attempt's record keeps of an ``ExecResult``: every field the two types share (the
#: executor and the store never import each other, so the worker translates, here only).
_OUTCOME_FIELDS = tuple(f.name for f in dataclasses.fields(AttemptOutcome))


def outcome_of(
    result: ExecResult, *, failure: Failure | None, isolation: str | None
) -> AttemptOutcome:
    """The ``AttemptOutcome`` the store records for ``result``, with the failure the worker
    decided on (its own after a shutdown) and the isolation to record."""
    values: dict[str, Any] = {name: getattr(result, name) for name in _OUTCOME_FIELDS}
    values.update(failure=failure, isolation=isolation)
    return AttemptOutcome(**values)


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


#: errno values that mean "the disk is full" (a store/disk failure, not the task's).
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
#: Backoff of a final report the store refused (a full disk): fast to recover once space returns.
REPORT_RETRY_FIRST_S = 0.1
REPORT_RETRY_MAX_S = 2.0


def is_store_failure(exc: BaseException) -> bool:
    """A failure of the store or of the disk under it (not of the task, not a bug here)."""
    return isinstance(exc, StoreError) or (isinstance(exc, OSError) and exc.errno in _DISK_FULL)


class _AttemptSink:
    """Forwards what the executor reports into the store, fenced on this attempt.

    A store write that fails (a full disk) is never raised into the executor, whose output pump
    would stop draining the pipes and leave the process blocked until its timeout: the sink
    records the failure, drops what follows and stops the attempt (``stop``), which the worker
    then reports as ``store_error``."""

    def __init__(self, worker: Worker, claim: Claim, stop: asyncio.Event) -> None:
        self._worker = worker
        self._run_id = claim.run.id
        self._attempt = claim.attempt
        self._stop = stop
        self._artifact_bytes = 0
        #: Why the store could not record this attempt (the first failure), if it could not.
        self.store_failure: str | None = None

    def _failed(self, what: str, exc: BaseException) -> None:
        if self.store_failure is None:
            self.store_failure = f"{what}: {exc}"
            log.error("run %s attempt %d: %s; stopping it", self._run_id, self._attempt, exc)
        self._stop.set()

    async def output(self, stream: Stream, data: bytes) -> None:
        if self.store_failure is not None:
            return
        w = self._worker
        try:
            offset = await w.store.append_log(self._run_id, self._attempt, w.id, stream, data)
        except (StoreError, OSError) as exc:
            self._failed(f"could not store {stream.value}", exc)
            return
        if offset is None:
            self._stop.set()  # fenced out: the run is no longer ours, stop it
        w.events.run_changed(self._run_id)

    async def progress(self, progress: Progress) -> None:
        if self.store_failure is not None:
            return
        w = self._worker
        try:
            recorded = await w.store.record_progress(self._run_id, self._attempt, w.id, progress)
        except (StoreError, OSError) as exc:
            self._failed("could not store progress", exc)
            return
        if recorded:
            w.events.run_changed(self._run_id)

    async def artifact(self, name: str, file: BinaryIO, size: int) -> None:
        w = self._worker
        budget = w.options.max_artifact_bytes - self._artifact_bytes
        if budget <= 0 or self.store_failure is not None:
            return
        try:
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
        except StoreError as exc:
            self._failed("could not store artifacts", exc)
        except OSError as exc:
            if exc.errno not in _DISK_FULL:
                raise
            self._failed("could not store artifacts", exc)


@dataclass
class _Held:
    attempt: int
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    shutdown: bool = False
    #: Set before the final report: from then on the store may say "not held" because the
    #: attempt was finished by us, which is not a reclaim.
    reporting: bool = False


class Worker:
    def __init__(
        self,
        store: Store,
        executor: Executor,
        blobs: BlobStore,
        events: EventHub,
        options: WorkerOptions,
        worker_id: str | None = None,
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.executor = executor
        self.blobs = blobs
        self.events = events
        self.options = options
        self.metrics = metrics or Metrics()
        self.concurrency = options.concurrency
        self.id = worker_id or new_worker_id()
        self._held: dict[str, _Held] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Final reports the store refused, retried off the slot (see ``_report_later``).
        self._reports: set[asyncio.Task[None]] = set()
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
        info = WorkerInfo(
            self.id, socket.gethostname(), os.getpid(), self.concurrency, now, now,
            labels=tuple(sorted(self.options.labels())),
        )  # fmt: skip
        await self.store.register_worker(info)

    def stop(self) -> None:
        self._stopping.set()
        self._slot_freed.set()
        self.events.work_available()

    async def _drain(self) -> None:
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=self.options.shutdown_grace_s)
            if pending:
                log.warning("shutdown: interrupting %d running attempt(s)", len(pending))
                for held in self._held.values():
                    held.shutdown = True
                    held.cancel.set()
                await asyncio.wait(pending)
        if self._reports:
            # Reports the store keeps refusing: the lease and the reaper cover them.
            _, late = await asyncio.wait(self._reports, timeout=self.options.shutdown_grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    # -- claiming -----------------------------------------------------------------------------
    async def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            free = self.concurrency - len(self._tasks)
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            now = utcnow()
            lease = now + timedelta(seconds=self.options.lease_s)
            try:
                limits = ClaimLimits(
                    default_max_concurrent=self.options.tenant_max_concurrent,
                    worker_labels=self.options.labels(),
                )
                claims = await self.store.claim(self.id, free, now, lease, limits)
            except Exception:
                # A store that is briefly busy or unavailable must not end the worker: nothing
                # was claimed (the claim is one transaction), so try again after a poll.
                log.exception("claim failed; retrying")
                await self._idle()
                continue
            for claim in claims:
                self._start(claim)
            if not claims:
                await self._idle()

    async def _idle(self) -> None:
        """Wait for work. The in-process EventHub always wakes us at once; a store that wakes
        across processes does too, and then the poll only catches runs made elsewhere, so it
        can be slower. A delayed run or a retry coming due wakes us at its time (``_until_due``):
        a sub-second retry delay must not wait a whole poll."""
        poll = self.options.poll_s
        if self.store.wakes_across_processes:
            poll = max(poll, NOTIFIED_POLL_S)
        timeout = await self._until_due(poll)
        if not self.store.wakes_across_processes:
            await self.events.wait_for_work(timeout)
            return
        waits = {
            asyncio.ensure_future(self.events.wait_for_work(timeout)),
            asyncio.ensure_future(self.store.wait_for_work(timeout)),
        }
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for wait in pending:
            wait.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _until_due(self, poll: float) -> float:
        """Seconds until the earliest pending run becomes claimable, at most ``poll``. A run
        made by another process after this query is still seen within ``poll``."""
        try:
            due = await self.store.next_available_at(self.options.labels())
        except Exception:
            log.exception("reading the next due time failed; polling")
            return poll
        if due is None:
            return poll
        return min(poll, max((due - utcnow()).total_seconds(), 0.0))

    def _start(self, claim: Claim) -> None:
        self.metrics.started(claim.run, claim.attempt, utcnow())
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
        # every record of this attempt's task (ours, the executor's) names the run
        bind_run(run_id=run.id, tenant=run.tenant, attempt=claim.attempt, worker_id=self.id)
        log.debug("attempt started")
        held = self._held[run.id]
        stop = asyncio.Event()
        stop_watch = asyncio.create_task(self._relay(stop, held.cancel))
        self.events.run_changed(run.id)
        handed_off = False
        span: AttemptSpan | None = None
        try:
            span = self.metrics.tracing.start_attempt(run, claim.attempt)
            workspace = run.labels.get(WORKSPACE_LABEL)
            spec = _attempt_spec(run, workspace, span.traceparent)
            limits = self.options.limits_for(run.spec)
            # The output left at the end travels with the finish (one store write fewer).
            request = ExecRequest(
                run.id,
                claim.attempt,
                spec,
                limits,
                workspace or None,
                output_tail_in_result=True,
            )
            sink = _AttemptSink(self, claim, stop)
            try:
                result = await self.executor.execute(request, sink, held.cancel)
            except Exception as exc:
                # The executor promises not to raise for anything the task does; if it still
                # does (a bug, a full disk), report the attempt now instead of letting the lease
                # run out. Its process tree is already dead (the executor's own cleanup).
                log.exception("run %s attempt %d: executor error", run.id, claim.attempt)
                kind = FailureKind.STORE_ERROR if is_store_failure(exc) else FailureKind.SPAWN_ERROR
                failure = Failure(kind=kind, message=f"executor error: {exc}")
                result = ExecResult(succeeded=False, failure=failure)
            if sink.store_failure is not None:
                # Output or artifacts are missing from the record: the attempt cannot count.
                failure = Failure(kind=FailureKind.STORE_ERROR, message=sink.store_failure)
                result = dataclasses.replace(result, succeeded=False, failure=failure, log_tail=())
            held.reporting = True
            report = self._finish_args(claim, result, shutdown=held.shutdown)
            failed = report[0].failure
            span.end(None if failed is None else failed.kind.value, at=report[1])
            try:
                await self._report(claim, *report)
            except (StoreError, OSError) as exc:
                # The store refuses even the report (a full disk): free the slot now and keep
                # trying in the background; the lease and the reaper cover us if we cannot.
                log.error(
                    "run %s attempt %d: report failed (%s); retrying", run.id, claim.attempt, exc
                )
                self._report_later(claim, report)
                handed_off = True
        finally:
            if span is not None:
                span.end("interrupted")  # not ended above: the attempt did not get that far
            stop_watch.cancel()
            if not handed_off:
                self._held.pop(run.id, None)
            self.events.run_changed(run.id)

    @staticmethod
    async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
        await source.wait()
        target.set()

    def _report_later(
        self, claim: Claim, report: tuple[AttemptOutcome, datetime, datetime | None]
    ) -> None:
        task = asyncio.create_task(self._retry_report(claim, report), name=f"report-{claim.run.id}")
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

    async def _retry_report(
        self, claim: Claim, report: tuple[AttemptOutcome, datetime, datetime | None]
    ) -> None:
        """Retry the final report with backoff for at most one lease: past it the lease has
        expired (the heartbeat cannot renew on a full disk either) and the reaper, whose own
        write is fenced like ours, finishes the attempt once the store accepts writes again."""
        run_id = claim.run.id
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.options.lease_s
        delay = REPORT_RETRY_FIRST_S
        try:
            while True:
                await asyncio.sleep(min(delay, max(give_up - loop.time(), 0.0)))
                try:
                    await self._report(claim, *report)
                except (StoreError, OSError) as exc:
                    if loop.time() >= give_up:
                        log.error(
                            "run %s: giving up reporting (%s); the reaper takes it", run_id, exc
                        )
                        return
                    delay = min(delay * 2, REPORT_RETRY_MAX_S)
                    continue
                log.info("run %s attempt %d: reported after a store failure", run_id, claim.attempt)
                return
        finally:
            self._held.pop(run_id, None)
            self.events.run_changed(run_id)

    def _finish_args(
        self, claim: Claim, result: ExecResult, *, shutdown: bool
    ) -> tuple[AttemptOutcome, datetime, datetime | None]:
        """What ``finish_attempt`` records for ``result``: the outcome, its time and the retry
        time the policy gives (computed once, so that a retried report records the same)."""
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
        outcome = outcome_of(
            result, failure=failure, isolation=result.isolation or self.executor.isolation
        )
        return outcome, now, retry_at

    async def _report(
        self, claim: Claim, outcome: AttemptOutcome, now: datetime, retry_at: datetime | None
    ) -> None:
        updated = await self.store.finish_attempt(
            claim.run.id, claim.attempt, self.id, outcome, now, retry_at
        )
        if updated is None:
            log.warning(
                "run %s attempt %d: fenced out, result dropped", claim.run.id, claim.attempt
            )
            return
        self.metrics.attempt_finished(updated, outcome.failure, outcome.isolation)
        log.debug("attempt finished: run %s", updated.status.value)
        if retry_at is not None:
            self.events.work_available()

    # -- heartbeat ----------------------------------------------------------------------------
    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.heartbeat_s)
            try:
                await self._heartbeat()
            except StoreError as exc:
                log.warning("heartbeat failed: %s", exc)  # e.g. a full disk; no traceback
            except Exception:
                # A busy or briefly unavailable store must not kill the worker: the lease is
                # long enough to survive several missed beats.
                log.exception("heartbeat failed")

    async def _heartbeat(self) -> None:
        now = utcnow()
        held = [(run_id, h.attempt) for run_id, h in self._held.items()]
        lease = now + timedelta(seconds=self.options.lease_s)
        reply = await self.store.heartbeat(self.id, held, now, lease)
        # The snapshot above was taken before awaiting the store: an attempt that we finished
        # meanwhile is "not held" too. Only an attempt we are still running was taken from us
        # (one fenced out while reporting is logged by ``_report``).
        attempts = dict(held)
        lost = {r for r in reply.lost if r in attempts and self._still_running(r, attempts[r])}
        for run_id in reply.cancel | lost:
            self._on_cancel(run_id)
        if lost:
            # Someone declared us dead (a long pause, a clock jump): our attempts were reaped.
            # Stop them (above) and register again so our future claims are attributed.
            log.warning("%d attempt(s) were reclaimed from this worker", len(lost))
            await self._register()

    def _still_running(self, run_id: str, attempt: int) -> bool:
        held = self._held.get(run_id)
        return held is not None and held.attempt == attempt and not held.reporting

    @property
    def running(self) -> int:
        return len(self._tasks)


def _attempt_spec(run: Run, workspace: str | None, traceparent: str | None) -> ExecSpec:
    """The run's spec with what mcpexec adds to its environment (``model_copy`` skips the
    ``MCPEXEC_*`` refusal meant for callers)."""
    env = dict(run.spec.env)
    if run.params:  # a task's parameters join its environment as data (issue 11)
        env.update(param_inputs(run.params).env)
    if workspace:  # a workflow step's workspace (issue 16; only mcpexec sets mcp/*)
        env["MCPEXEC_WORKSPACE"] = workspace
    if traceparent:  # the attempt's span (or, untraced, the caller's): W3C Trace Context
        env["TRACEPARENT"] = traceparent
    if env == run.spec.env:
        return run.spec
    spec: ExecSpec = run.spec.model_copy(update={"env": env})
    return spec
