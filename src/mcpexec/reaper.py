"""Housekeeping: reclaim attempts of dead workers, and purge runs past their retention.

Several processes may run a reaper against one store; every write it makes is fenced (the lease
must still be expired, the attempt still held by the dead worker), so two reapers never double
count an attempt.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
from dataclasses import dataclass
from datetime import timedelta

from mcpexec.events import EventHub
from mcpexec.history import MAX_HISTORY_HOURS
from mcpexec.metrics import Metrics
from mcpexec.models import Failure, FailureKind, utcnow
from mcpexec.retry import next_attempt_at
from mcpexec.settings import Settings
from mcpexec.store.base import AttemptOutcome, Store, WorkerInfo
from mcpexec.store.blobs import BlobStore

log = logging.getLogger(__name__)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True, slots=True)
class ReaperOptions:
    """What the ``Reaper`` needs from the configuration."""

    interval_s: float
    lease_s: float
    retention_days: float
    purge_interval_s: float
    #: The event log's retention (issue 17), applied every round (cheap when nothing is due).
    events_max_count: int = 100_000
    events_retention_days: float = 7.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ReaperOptions:
        return cls(
            interval_s=settings.reaper_s,
            lease_s=settings.lease_s,
            retention_days=settings.retention_days,
            purge_interval_s=settings.purge_interval_s,
            events_max_count=settings.events_max_count,
            events_retention_days=settings.events_retention_days,
        )


class Reaper:
    def __init__(
        self,
        store: Store,
        blobs: BlobStore,
        events: EventHub,
        options: ReaperOptions,
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.store = store
        self.blobs = blobs
        self.events = events
        self.options = options
        self._rng = random.Random()  # noqa: S311 - jitter, not security
        self._hostname = socket.gethostname()

    async def run_forever(self) -> None:
        last_purge = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self.reap()
                await self.prune_events()
                if loop.time() - last_purge >= self.options.purge_interval_s:
                    last_purge = loop.time()
                    await self.purge()
            except Exception:
                log.exception("housekeeping failed; retrying next round")
            await asyncio.sleep(self.options.interval_s)

    def _dead(self, worker: WorkerInfo) -> bool:
        """A worker on this host whose process is gone is dead now, without waiting for its
        lease (fast recovery after kill -9 and restart); elsewhere only silence counts."""
        if worker.pid == os.getpid() and worker.hostname == self._hostname:
            return False
        if worker.hostname == self._hostname and not _pid_alive(worker.pid):
            return True
        silent_for = (utcnow() - worker.heartbeat_at).total_seconds()
        return silent_for > 2 * self.options.lease_s

    async def reap(self) -> int:
        """Expire dead workers, then fail (and maybe retry) every expired attempt."""
        for worker in await self.store.list_workers():
            if self._dead(worker):
                held = await self.store.expire_worker(worker.id, utcnow())
                log.warning("worker %s is gone; reclaiming %d attempt(s)", worker.id, held)
        now = utcnow()
        reaped = 0
        for claim in await self.store.expired_leases(now):
            run = claim.run
            assert run.worker_id is not None
            kind = FailureKind.WORKER_LOST
            retry_at = next_attempt_at(run.retry, kind, claim.attempt, now, self._rng)
            outcome = AttemptOutcome(
                succeeded=False,
                failure=Failure(kind=kind, message=f"worker {run.worker_id} stopped heartbeating"),
            )
            updated = await self.store.finish_attempt(
                run.id,
                claim.attempt,
                run.worker_id,
                outcome,
                now,
                retry_at,
                lease_expired_before=now,
            )
            if updated is not None:
                reaped += 1
                self.metrics.attempt_finished(updated, outcome.failure)
                self.events.run_changed(run.id)
                if retry_at is not None:
                    self.events.work_available()
        return reaped

    async def prune_events(self) -> int:
        """Drop events beyond ``events_max_count`` or older than ``events_retention_days``,
        a bounded batch at a time."""
        before = utcnow() - timedelta(days=self.options.events_retention_days)
        total = 0
        while True:
            removed = await self.store.prune_events(self.options.events_max_count, before)
            total += removed
            if removed == 0:
                return total

    async def purge(self) -> int:
        before = utcnow() - timedelta(days=self.options.retention_days)
        total = 0
        while True:
            ids = await self.store.purge_finished(before)
            for run_id in ids:
                await self.blobs.delete_run(run_id)
            total += len(ids)
            if len(ids) == 0:
                break
        if total:
            log.info("purged %d run(s) finished before %s", total, before.isoformat())
        await self.prune_history()
        return total

    async def prune_history(self) -> int:
        """Forget the hourly rollup beyond the longest history anyone can ask for (plus the
        hour in progress), a bounded batch at a time: it is kept after its runs are purged,
        and would otherwise grow by every hour each tenant ran something."""
        before = utcnow() - timedelta(hours=MAX_HISTORY_HOURS + 1)
        total = 0
        while removed := await self.store.prune_history(before):
            total += removed
        if total:
            log.info("pruned %d row(s) of run history before %s", total, before.isoformat())
        return total
