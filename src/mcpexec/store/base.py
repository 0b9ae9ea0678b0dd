"""The store contract: the durable queue and state, at the level of domain operations.

Every method is one atomic operation (one short transaction). Times are passed in by the caller
(``now``) so that the domain, not the database clock, decides; implementations store them with at
least microsecond precision and return timezone-aware UTC datetimes.

Fencing: every write about an attempt names ``(run_id, attempt, worker_id)`` and changes nothing
unless that worker still holds that attempt (the run is ``running`` with that attempt number and
worker). A late report from a worker presumed dead is therefore ignored, and the method says so by
returning ``None``/``False``.

The one contract test suite (``tests/contract``) runs against every implementation.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mcpexec.models import (
    Artifact,
    Attempt,
    ExecSpec,
    Failure,
    Page,
    Progress,
    RetryPolicy,
    Run,
    RunFilter,
    Stream,
)


@dataclass(frozen=True, slots=True)
class NewRun:
    """A run to enqueue; ``id`` is chosen by the caller (unguessable)."""

    id: str
    tenant: str
    spec: ExecSpec
    retry: RetryPolicy
    priority: int
    labels: dict[str, str]
    created_at: datetime
    run_at: datetime | None = None
    idempotency_key: str | None = None
    rerun_of: str | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """A run handed to a worker: the attempt number it must use in every fenced write."""

    run: Run
    attempt: int
    lease_expires_at: datetime


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """How an attempt ended, as the worker reports it."""

    succeeded: bool
    exit_code: int | None = None
    signal: int | None = None
    failure: Failure | None = None
    output_truncated: bool = False
    result: Any = None
    #: Recorded with the attempt: the isolation actually applied and the limits in force.
    isolation: str | None = None
    limits: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class HeartbeatReply:
    """What a heartbeat learns: runs whose cancellation was requested, and attempts the worker no
    longer holds (its lease was reaped); the worker must stop both."""

    cancel: frozenset[str] = frozenset()
    lost: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    id: str
    hostname: str
    pid: int
    concurrency: int
    started_at: datetime
    heartbeat_at: datetime
    running: int = 0


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: str
    name: str
    token_hash: str
    role: str
    tenant: str
    created_at: datetime
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class Stats:
    by_status: dict[str, int] = field(default_factory=dict)


class Store(abc.ABC):
    """Durable state. Implementations: ``MemoryStore`` (tests), ``SqliteStore`` (default)."""

    # -- lifecycle ---------------------------------------------------------------------------
    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and apply pending migrations. Idempotent."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections. Idempotent."""

    # -- runs --------------------------------------------------------------------------------
    @abc.abstractmethod
    async def enqueue(self, new: NewRun) -> tuple[Run, bool]:
        """Store a pending run, available at ``run_at`` (or at once).

        If ``idempotency_key`` is set and the tenant already has a run with that key, nothing is
        written and that run is returned with ``False``; otherwise ``(run, True)``. A run id is
        never reused (an existing id raises ``Conflict``). Runs get a strictly increasing ``seq``
        (FIFO order and paging).
        """

    @abc.abstractmethod
    async def get_run(self, run_id: str, tenant: str | None = None) -> Run | None:
        """The run, or ``None`` if unknown (or not of ``tenant`` when one is given)."""

    @abc.abstractmethod
    async def list_runs(self, filter: RunFilter, limit: int, cursor: int | None) -> Page:
        """Runs matching ``filter``, newest first (by ``seq``), at most ``limit``.

        ``cursor`` is the ``seq`` to continue below (exclusive); ``Page.next_cursor`` is the
        string form of the last returned ``seq`` when more may follow, else ``None``. Labels
        filter by equality of every given key; ``created_after`` is inclusive and
        ``created_before`` exclusive.
        """

    @abc.abstractmethod
    async def claim(
        self, worker_id: str, limit: int, now: datetime, lease_expires_at: datetime
    ) -> list[Claim]:
        """Atomically take up to ``limit`` pending runs whose available time is ``<= now``, highest
        ``priority`` first, then lowest ``seq`` (FIFO). Each becomes ``running`` with
        ``attempts + 1``, ``worker_id``, the lease, ``started_at`` (set on the first attempt only)
        and a new attempt row (status ``running``). Never hands a run to two workers.
        Runs with ``cancel_requested`` are never claimed (cancel makes them terminal anyway)."""

    @abc.abstractmethod
    async def heartbeat(
        self,
        worker_id: str,
        held: list[tuple[str, int]],
        now: datetime,
        lease_expires_at: datetime,
    ) -> HeartbeatReply:
        """Renew the lease of each held ``(run_id, attempt)`` still owned by this worker, update
        the worker's ``heartbeat_at`` and ``running`` count, and report which held runs have
        cancellation requested and which are no longer held (fenced out)."""

    @abc.abstractmethod
    async def record_progress(
        self, run_id: str, attempt: int, worker_id: str, progress: Progress
    ) -> bool:
        """Set the run's latest progress (fenced). ``False`` if the worker no longer holds it."""

    @abc.abstractmethod
    async def finish_attempt(
        self,
        run_id: str,
        attempt: int,
        worker_id: str,
        outcome: AttemptOutcome,
        now: datetime,
        retry_at: datetime | None,
        lease_expired_before: datetime | None = None,
    ) -> Run | None:
        """Close an attempt and move the run on, in one transaction (fenced).

        With ``lease_expired_before`` the write also requires the lease to have expired at or
        before that time (the reaper uses it so that a renewal that won the race keeps the
        attempt).

        The attempt gets ``finished_at``, exit code, signal, failure, truncation, and status
        ``completed``/``failed``/``cancelled``. The run then becomes:
        - ``completed`` if the outcome succeeded (even if cancellation was requested meanwhile:
          the work is done), with ``exit_code``, ``result`` and ``finished_at``;
        - ``cancelled`` if cancellation was requested or the failure kind is ``cancelled``
          (the run's failure kind is then ``cancelled``; the attempt keeps the reported one);
        - ``pending`` with ``next_attempt_at = available_at = retry_at`` if ``retry_at`` is given
          (the caller applied the retry policy), keeping the last failure visible;
        - ``failed`` otherwise.
        A terminal run is ``partial`` when it did not complete and has artifacts. The run's
        ``output_truncated`` stays set once any attempt truncated. ``result`` must be JSON
        serialisable. Returns the updated run, or ``None`` when fenced out (nothing written).
        """

    @abc.abstractmethod
    async def expired_leases(self, now: datetime, limit: int = 100) -> list[Claim]:
        """Running attempts whose lease expired at or before ``now`` (for the reaper), the
        longest expired first."""

    @abc.abstractmethod
    async def expire_worker(self, worker_id: str, now: datetime) -> int:
        """Declare a worker dead: end the lease of all its running attempts at ``now`` (an
        earlier end is kept) and delete its worker row. Returns how many attempts it holds;
        they stay ``running`` until the reaper finishes them."""

    @abc.abstractmethod
    async def request_cancel(
        self, run_id: str, now: datetime, tenant: str | None = None
    ) -> Run | None:
        """Cancel a run. ``pending`` → ``cancelled`` at once (failure kind ``cancelled``,
        ``finished_at`` now). ``running`` → ``cancel_requested`` set (the worker kills it and
        reports). Terminal runs are left as they are. Idempotent. ``None`` if unknown (or not
        of ``tenant`` when one is given)."""

    @abc.abstractmethod
    async def attempts(self, run_id: str) -> list[Attempt]:
        """All attempts of a run, oldest first."""

    # -- logs and artifacts --------------------------------------------------------------------
    @abc.abstractmethod
    async def append_log(
        self, run_id: str, attempt: int, worker_id: str, stream: Stream, data: bytes
    ) -> int | None:
        """Append to the run's stream (fenced); returns the byte offset the data starts at, or
        ``None`` when fenced out. Offsets count bytes of the stream across all attempts."""

    @abc.abstractmethod
    async def read_log(
        self, run_id: str, stream: Stream, offset: int, limit: int
    ) -> tuple[bytes, int]:
        """Up to ``limit`` bytes of the stream from ``offset``; returns them and the next offset.
        Reading past the end returns ``b""`` and ``offset``."""

    @abc.abstractmethod
    async def add_artifact(self, artifact: Artifact, worker_id: str) -> bool:
        """Record an artifact (fenced on ``artifact.attempt``); a later attempt's artifact of the
        same name replaces the earlier record. ``False`` when fenced out."""

    @abc.abstractmethod
    async def list_artifacts(self, run_id: str) -> list[Artifact]:
        """The run's artifacts, by name."""

    # -- workers -------------------------------------------------------------------------------
    @abc.abstractmethod
    async def register_worker(self, info: WorkerInfo) -> None:
        """Insert or replace the worker's row."""

    @abc.abstractmethod
    async def remove_worker(self, worker_id: str) -> None:
        """Delete the worker's row (clean shutdown)."""

    @abc.abstractmethod
    async def list_workers(self) -> list[WorkerInfo]:
        """All registered workers."""

    # -- housekeeping --------------------------------------------------------------------------
    @abc.abstractmethod
    async def purge_finished(self, before: datetime, limit: int = 500) -> list[str]:
        """Delete up to ``limit`` terminal runs finished before ``before`` with their attempts,
        logs and artifact records, the earliest finished first; returns their ids (in no
        particular order; to delete blobs). A purged run's idempotency key is free again."""

    @abc.abstractmethod
    async def stats(self, tenant: str | None = None) -> Stats:
        """Run counts by status."""

    # -- tokens --------------------------------------------------------------------------------
    @abc.abstractmethod
    async def add_token(self, token: TokenRecord) -> None:
        """Store a token record (only its hash). A duplicate id or hash raises ``Conflict``."""

    @abc.abstractmethod
    async def token_by_hash(self, token_hash: str) -> TokenRecord | None:
        """The token with this hash, revoked or not."""

    @abc.abstractmethod
    async def list_tokens(self) -> list[TokenRecord]:
        """All token records."""
