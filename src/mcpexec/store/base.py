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
import bisect
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from mcpexec.errors import McpexecError
from mcpexec.models import (
    Artifact,
    Attempt,
    ExecSpec,
    Failure,
    Notify,
    Page,
    Progress,
    RetryPolicy,
    Run,
    RunFilter,
    Stream,
)
from mcpexec.schedules import ScheduleSpec
from mcpexec.tasks import TaskDefinition


@dataclass(frozen=True, slots=True)
class RunCursor:
    """Where the next page of a runs list starts: below ``seq``, or below
    ``(created_at_us, seq)`` in a time window (see ``Store.list_runs``)."""

    seq: int
    created_at_us: int | None = None

    def token(self) -> str:
        """The opaque string a caller passes back: ``seq`` or ``created_at_us.seq``."""
        return str(self.seq) if self.created_at_us is None else f"{self.created_at_us}.{self.seq}"

    @classmethod
    def parse(cls, token: str) -> RunCursor:
        """The cursor ``token`` stands for; ``ValueError`` if it is not one ``token`` makes."""
        at, dot, seq = token.partition(".")
        if not dot:
            return cls(seq=_non_negative(at))
        return cls(seq=_non_negative(seq), created_at_us=_non_negative(at))


def _non_negative(text: str) -> int:
    """A decimal of at most 19 digits, capped at the stores' 64-bit maximum ("below
    everything")."""
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise ValueError(f"not a cursor: {text!r}")
    return min(int(text), 2**63 - 1)


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
    task: str | None = None
    task_version: int | None = None
    params: dict[str, Any] | None = None
    estimated_duration_ms: int | None = None
    #: The principal submitting (recorded on the run and in the audit log).
    owner: str | None = None
    #: The webhook told when the run ends (issue 17).
    notify: Notify | None = None
    #: The token it used (audit log only).
    token_id: str | None = None
    #: The tenant's queue limit when the tenant has none of its own (``TenantRecord``); checked
    #: in the enqueue's transaction. ``None``: no limit.
    default_max_queued: int | None = None
    #: Pending runs of all tenants together (the server's ``max_queued``); ``None``: no limit.
    global_max_queued: int | None = None
    #: Only a worker having every one of these labels may claim the run (sorted, distinct;
    #: empty: any worker).
    worker_labels: tuple[str, ...] = ()


#: One item of ``Store.enqueue_many``: ``(run, created)`` as ``enqueue`` answers, or the error
#: that refused that item (nothing of it was written).
Enqueued = tuple[Run, bool] | McpexecError
#: ``enqueue_many``'s check of a replayed idempotency key: the error refusing to answer
#: ``existing`` for ``new`` (e.g. the key was used with another request), or ``None``.
ReplayCheck = Callable[[NewRun, Run], McpexecError | None]


@dataclass(frozen=True, slots=True)
class ClaimLimits:
    """What a claim must respect besides its ``limit``: each tenant's ``max_concurrent`` (its
    own, else this default; ``None``: no limit), counted in the claim's own transaction."""

    default_max_concurrent: int | None = None
    #: The claiming worker's labels: it takes a run only if these include every one of the
    #: run's ``worker_labels`` (a run asking none is taken by any worker).
    worker_labels: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class TenantRecord:
    """A tenant and its quotas (``None``: the server's default). ``max_runtime_s`` caps a
    run's timeout; ``max_limits`` and ``default_limits`` map fields of ``models.Limits``
    (``memory_mb``, ``cpu_s``, ``pids``, ``disk_mb``) to the tenant's maximum and default
    (an absent key: none of the tenant's own)."""

    id: str
    created_at: datetime
    max_concurrent: int | None = None
    max_queued: int | None = None
    max_runtime_s: int | None = None
    max_limits: Mapping[str, int] = field(default_factory=dict)
    default_limits: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the append-only audit log: who did what, when, with which token."""

    at: datetime
    tenant: str
    actor: str  # principal id
    action: str  # submit, cancel, token.create, token.revoke, tenant.create, tenant.update
    target: str  # run id, token id, tenant id
    token_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    seq: int = 0  # set by the store


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
    #: The attempt's last output, not yet appended: ``(stream, bytes)`` in order, appended to
    #: the logs in the finish's own transaction (one write fewer per run than an
    #: ``append_log`` before the finish), fenced with it.
    log_tail: tuple[tuple[Stream, bytes], ...] = ()


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
    #: The worker's labels (``mcpexec worker --labels``), sorted: it claims the runs whose
    #: ``worker_labels`` are all among them.
    labels: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A token (only its hash) and the principal it authenticates."""

    id: str
    name: str
    token_hash: str
    role: str
    tenant: str
    created_at: datetime
    revoked: bool = False
    #: The principal (issue 10); tokens stored before were each their own principal.
    principal_id: str = ""
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    #: ``user`` or ``service``.
    kind: str = "service"

    @property
    def principal(self) -> str:
        return self.principal_id or self.id


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the durable event log (issue 17): a change of a run, schedule or workflow
    run, written in the transaction of the change. ``id`` increases strictly in commit order
    (a reader that has seen ``id`` never later finds a smaller one); ``subject`` is the run,
    schedule or workflow run id; ``data`` is a small JSON object (see docs/observability.md)."""

    id: int
    at: datetime
    tenant: str
    type: str
    subject: str
    data: dict[str, Any] = field(default_factory=dict)
    #: The principal owning the subject (the run's submitter), if known.
    owner: str | None = None


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Which events ``Store.read_events`` returns: ``id > after``, of ``tenant`` (all when
    ``None``), of ``owner``, whose type starts with ``type_prefix`` and whose subject is
    ``subject`` (each when given), at most ``limit``."""

    after: int = 0
    tenant: str | None = None
    owner: str | None = None
    type_prefix: str | None = None
    subject: str | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class EventBatch:
    """What ``read_events`` found, oldest first, and ``through``: the id up to which the log
    was read (the next read continues after it, even when a filter kept nothing)."""

    events: list[Event]
    through: int


@dataclass(frozen=True, slots=True)
class Stats:
    by_status: dict[str, int] = field(default_factory=dict)


#: The upper bounds (microseconds, inclusive) of the rollup's histogram buckets: 5 ms … 1 h;
#: the bucket after the last holds everything longer. The SQL dialects' migration 0013 writes
#: the same bounds in its trigger.
ROLLUP_BOUNDS_US = (5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
                    2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000, 300_000_000,
                    900_000_000, 3_600_000_000)  # fmt: skip


def rollup_bucket(us: int) -> int:
    """The histogram bucket of a duration of ``us`` microseconds."""
    return bisect.bisect_left(ROLLUP_BOUNDS_US, us)


@dataclass(frozen=True, slots=True)
class HourStats:
    """The runs of one tenant (or all) that finished in one hour: counts by terminal status,
    and histograms (bucket → runs, see ``ROLLUP_BOUNDS_US``) of their duration (first start
    to finish) and queue wait (available to first start); runs cancelled before they started
    count in ``finished`` only."""

    hour: datetime
    finished: dict[str, int] = field(default_factory=dict)
    duration: dict[int, int] = field(default_factory=dict)
    wait: dict[int, int] = field(default_factory=dict)


class Store(abc.ABC):
    """Durable state. Implementations: ``MemoryStore`` (tests), ``SqliteStore`` (default)."""

    #: Whether ``wait_for_work`` is also woken by work that *other processes* made (a dialect
    #: that can notify, e.g. PostgreSQL's LISTEN/NOTIFY). When ``False`` it is woken only by
    #: this store object's own writes, so workers in other processes must keep polling; when
    #: ``True`` a worker polls only to catch delayed runs and retries coming due.
    wakes_across_processes: ClassVar[bool] = False

    @abc.abstractmethod
    async def wait_for_work(self, timeout: float) -> bool:
        """Wait until work may have become claimable (a run was enqueued, or put back to
        ``pending`` for a retry) since the last call, or until ``timeout`` seconds passed;
        ``True`` when woken, ``False`` on timeout. Always bounded by ``timeout``; a wake-up may
        be spurious (the caller claims and finds out), a missed one is covered by the timeout.
        """

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
        """Store a pending run, available at ``run_at`` (or at once), with its owner, and an
        audit entry ``submit`` in the same transaction.

        Raises ``QuotaExceeded`` (nothing written) when the tenant already has its
        ``max_queued`` (its own, else ``new.default_max_queued``) runs pending, or all tenants
        together ``new.global_max_queued``, counted in the same transaction.

        If ``idempotency_key`` is set and the tenant already has a run with that key, nothing is
        written and that run is returned with ``False``; otherwise ``(run, True)``. A run id is
        never reused (an existing id raises ``Conflict``). Runs get a strictly increasing ``seq``
        (FIFO order and paging).
        """

    @abc.abstractmethod
    async def enqueue_many(
        self,
        news: Sequence[NewRun],
        *,
        all_or_nothing: bool = False,
        check_replay: ReplayCheck | None = None,
    ) -> list[Enqueued]:
        """Enqueue ``news`` in ONE transaction (one durable commit), each item exactly as
        ``enqueue`` would, in order: its idempotency key (a key given twice in the batch returns
        the first item's run), the queue limits counted with the items before it, its audit
        entry. Returns one ``Enqueued`` per item, in order: ``(run, created)``, or the
        ``McpexecError`` that refused the item (``QuotaExceeded``, ``Conflict``, or what
        ``check_replay`` returned for a replayed key); a refused item writes nothing and
        changes nothing of the others.

        ``all_or_nothing``: if any item is refused, nothing at all is written and
        ``BatchRefused`` is raised with every refused item's index and error.
        """

    @abc.abstractmethod
    async def get_run(self, run_id: str, tenant: str | None = None) -> Run | None:
        """The run, or ``None`` if unknown (or not of ``tenant`` when one is given)."""

    @abc.abstractmethod
    async def list_runs(self, filter: RunFilter, limit: int, cursor: RunCursor | None) -> Page:
        """Runs matching ``filter``, newest first, at most ``limit``: by ``seq``, or by
        ``(created_at, seq)`` when the filter has a time window (``created_after`` or
        ``created_before``), so that a window is a range of an index whatever its age.

        ``cursor`` is where to continue below (exclusive); ``Page.next_cursor`` is the
        ``RunCursor.token`` of the last returned run when more may follow, else ``None``. A
        cursor of the other order (from a list with or without a window) keeps the runs below
        its ``seq``: no cursor is refused. Labels
        filter by equality of every given key; ``created_after`` is inclusive and
        ``created_before`` exclusive; ``tool`` (``server.tool``) keeps the tool runs whose
        spec's ``tool`` is that server and name.
        """

    @abc.abstractmethod
    async def claim(
        self,
        worker_id: str,
        limit: int,
        now: datetime,
        lease_expires_at: datetime,
        limits: ClaimLimits | None = None,
    ) -> list[Claim]:
        """Atomically take up to ``limit`` pending runs whose available time is ``<= now``, chosen
        across tenants by ``tenancy.fair_pick`` (the tenant with the fewest running attempts
        first; within a tenant highest ``priority`` first, then lowest ``seq``, FIFO), never
        taking a tenant past its ``max_concurrent`` (the tenant's own, else
        ``limits.default_max_concurrent``), counted in the same transaction so that claimers in
        several processes never over-admit. Each becomes ``running`` with
        ``attempts + 1``, ``worker_id``, the lease, ``started_at`` (set on the first attempt only)
        and a new attempt row (status ``running``). Never hands a run to two workers.
        Runs with ``cancel_requested`` are never claimed (cancel makes them terminal anyway),
        nor runs asking for a worker label the claimer lacks (``limits.worker_labels``)."""

    @abc.abstractmethod
    async def next_available_at(
        self, worker_labels: Collection[str] = frozenset()
    ) -> datetime | None:
        """The earliest time a pending run becomes claimable (its ``run_at`` or retry's
        ``next_attempt_at``; a time in the past for a run claimable now), or ``None`` when no
        run is pending. Runs with ``cancel_requested`` do not count, nor runs asking for a
        worker label not in ``worker_labels`` (the asking worker could not claim them). Workers
        sleep until then instead of until their next poll, so a sub-second retry delay is
        honoured."""

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

        ``outcome.log_tail`` is appended to the logs first, in order, exactly as ``append_log``
        would (offsets, storage usage); fenced out, nothing of it is written.

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
    async def storage_used(self, tenant: str | None = None) -> int:
        """Bytes of logs and artifacts stored for ``tenant`` (all tenants when ``None``), as
        counted by ``append_log``, ``add_artifact`` (a replaced artifact's size is given back)
        and ``purge_finished`` in their own transactions: one cheap lookup, for the storage
        budget checked at submit."""

    @abc.abstractmethod
    async def stats(self, tenant: str | None = None) -> Stats:
        """Run counts by status."""

    @abc.abstractmethod
    async def run_history(self, since: datetime, tenant: str | None = None) -> list[HourStats]:
        """The hours from the one holding ``since`` on in which runs finished, oldest first,
        summed over tenants unless ``tenant`` is given. Kept with each finish (the SQL
        dialects: a rollup by trigger, migration 0013) and kept after the runs are purged."""

    @abc.abstractmethod
    async def prune_history(self, before: datetime, limit: int = 5000) -> int:
        """Forget up to ``limit`` rollup rows of the hours before the one holding ``before``,
        oldest first: ``run_history`` is never asked further back than the API serves
        (``history.MAX_HISTORY_HOURS``), and without this the rollup grows by every hour a
        tenant ran anything. Returns how many rows went (0 when there is nothing to do: one
        indexed lookup)."""

    # -- the event log (issue 17) --------------------------------------------------------------
    @abc.abstractmethod
    async def read_events(self, query: EventQuery) -> EventBatch:
        """Events matching ``query``, oldest first. Every store writes them in the transaction
        of the change (the SQL dialects by triggers, migration 0011): ``run.submitted``,
        ``run.started``, ``run.retrying``, ``run.cancel_requested``, ``run.finished``;
        ``schedule.created``, ``schedule.updated``, ``schedule.paused``, ``schedule.resumed``,
        ``schedule.deleted``, ``schedule.fired``; ``workflow.status`` and ``workflow.<kind>``
        for each workflow event. ``through`` is the last id read: the last event returned when
        ``limit`` were returned, else the newest id of the whole log (so a filtered reader
        moves on past events it does not want)."""

    @abc.abstractmethod
    async def event_bounds(self) -> tuple[int, int]:
        """``(oldest, newest)`` id kept in the log; ``(0, 0)`` when it is empty. One indexed
        lookup: a reader whose ``after`` is below ``oldest - 1`` missed pruned events."""

    @abc.abstractmethod
    async def prune_events(self, keep: int, before: datetime, limit: int = 5000) -> int:
        """Delete up to ``limit`` of the oldest events that are beyond the newest ``keep`` or
        older than ``before``, never the newest event (its id tells readers where the log
        is); returns how many. Cheap when there is nothing to do (two indexed lookups)."""

    # -- webhooks, alerts, leases (issue 17; migration 0012) -----------------------------------
    @abc.abstractmethod
    async def claim_deliveries(
        self, now: datetime, lease_until: datetime, limit: int = 20
    ) -> list[Delivery]:
        """Take up to ``limit`` pending deliveries due at ``now`` (oldest due first): each one's
        ``attempts`` goes up by one and its ``next_at`` moves to ``lease_until``, so no other
        process takes it until then (a process that dies holding it leaves it due again).
        A run reaching a status its ``notify.on`` names queues a delivery (``body`` ``None``)
        in the transaction of that change."""

    @abc.abstractmethod
    async def finish_delivery(
        self,
        delivery_id: int,
        attempt: int,
        now: datetime,
        *,
        delivered: bool,
        error: str | None = None,
        next_at: datetime | None = None,
    ) -> bool:
        """Record the outcome of attempt ``attempt`` (fenced: ``False`` and nothing written when
        the delivery was claimed again since): ``delivered``; else due again at ``next_at``, or
        ``failed`` for good without one."""

    @abc.abstractmethod
    async def prune_deliveries(self, before: datetime, limit: int = 5000) -> int:
        """Delete up to ``limit`` delivered or failed deliveries created before ``before``;
        how many (pending ones stay, whatever their age)."""

    @abc.abstractmethod
    async def next_delivery_at(self) -> datetime | None:
        """When the earliest pending delivery is due (one index lookup)."""

    @abc.abstractmethod
    async def list_deliveries(
        self, subject: str | None = None, tenant: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        """Deliveries, newest first, of one subject and/or tenant."""

    @abc.abstractmethod
    async def record_alert(self, alert: AlertRecord, deliveries: list[NewDelivery]) -> None:
        """Write an alert's state (one row per ``(rule, subject)``) and queue its deliveries,
        in one transaction."""

    @abc.abstractmethod
    async def list_alerts(self, tenant: str | None = None) -> list[AlertRecord]:
        """Alert states (of ``tenant`` when given), firing first, then newest change first."""

    @abc.abstractmethod
    async def alert_figures(self, since: datetime, now: datetime) -> AlertFigures:
        """What the alert rules read, from indexes: runs finished since ``since`` by tenant,
        task and status; each tenant's oldest due pending run; the running runs with an
        estimated duration; the isolation of runs' last attempts finished since ``since``."""

    @abc.abstractmethod
    async def take_lease(self, name: str, holder: str, now: datetime, until: datetime) -> bool:
        """Hold the lease ``name`` until ``until`` when it is free, expired (``expires_at <=
        now``) or already ``holder``'s; ``False`` while another holder has it."""

    # -- tokens --------------------------------------------------------------------------------
    @abc.abstractmethod
    async def add_token(self, token: TokenRecord) -> None:
        """Store a token record (only its hash). A duplicate id or hash raises ``Conflict``."""

    @abc.abstractmethod
    async def token_by_hash(self, token_hash: str) -> TokenRecord | None:
        """The token with this hash, revoked or not."""

    @abc.abstractmethod
    async def list_tokens(self, tenant: str | None = None) -> list[TokenRecord]:
        """All token records (of ``tenant`` when given), oldest first."""

    # == tenancy (issue 10) ======================================================================
    @abc.abstractmethod
    async def revoke_token(self, token_id: str, tenant: str | None = None) -> TokenRecord | None:
        """Mark the token revoked (idempotent); ``None`` if unknown (or not of ``tenant``)."""

    @abc.abstractmethod
    async def touch_token(self, token_id: str, now: datetime) -> None:
        """Set the token's ``last_used_at``."""

    @abc.abstractmethod
    async def create_tenant(self, tenant: TenantRecord) -> TenantRecord:
        """Store a new tenant; an existing id raises ``Conflict``."""

    @abc.abstractmethod
    async def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        """The tenant, or ``None``."""

    @abc.abstractmethod
    async def list_tenants(self) -> list[TenantRecord]:
        """All tenants, by id. The migration creates ``default``."""

    @abc.abstractmethod
    async def update_tenant(
        self,
        tenant_id: str,
        max_concurrent: int | None,
        max_queued: int | None,
        *,
        max_runtime_s: int | None = None,
        max_limits: Mapping[str, int] | None = None,
        default_limits: Mapping[str, int] | None = None,
    ) -> TenantRecord | None:
        """Replace the tenant's quotas, all of them (``None``: the server's default, no cap,
        no limits of its own); ``None`` if unknown."""

    @abc.abstractmethod
    async def tenant_load(self, tenant: str) -> tuple[int, int]:
        """``(running, pending)`` runs of the tenant now."""

    @abc.abstractmethod
    async def add_audit(self, entry: AuditEntry) -> None:
        """Append to the audit log."""

    @abc.abstractmethod
    async def list_audit(
        self, tenant: str | None, limit: int, before: int | None = None
    ) -> list[AuditEntry]:
        """Audit entries (of ``tenant`` when given), the latest first, at most ``limit``, with
        ``seq`` below ``before`` when given."""

    # == tasks and schedules (issue 11) =========================================================
    @abc.abstractmethod
    async def define_task(
        self, tenant: str, owner: str, task: TaskDefinition, now: datetime
    ) -> tuple[TaskRecord, bool]:
        """Define ``task`` in one transaction: the latest version when its content hash is the
        same (``False``), else a new immutable version ``latest + 1`` (``True``). Defining an
        archived task brings it back."""

    @abc.abstractmethod
    async def get_task(self, tenant: str, name: str, version: int | None) -> TaskRecord | None:
        """One version (the latest when ``version`` is ``None``), archived or not."""

    @abc.abstractmethod
    async def list_tasks(self, tenant: str | None, archived: bool = False) -> list[TaskRecord]:
        """The latest version of every task (of ``tenant`` when given), by tenant and name;
        archived tasks only with ``archived``."""

    @abc.abstractmethod
    async def task_versions(self, tenant: str, name: str) -> list[TaskRecord]:
        """Every version of a task, oldest first ([] when unknown)."""

    @abc.abstractmethod
    async def archive_task(self, tenant: str, name: str) -> bool:
        """Mark every version archived (runs and versions stay readable); ``False`` if unknown."""

    @abc.abstractmethod
    async def create_schedule(self, schedule: ScheduleRecord) -> ScheduleRecord:
        """Store a new schedule (a duplicate id raises ``Conflict``)."""

    @abc.abstractmethod
    async def get_schedule(self, schedule_id: str, tenant: str | None) -> ScheduleRecord | None:
        """The schedule, or ``None`` if unknown (or not of ``tenant`` when one is given)."""

    @abc.abstractmethod
    async def list_schedules(self, tenant: str | None) -> list[ScheduleRecord]:
        """All schedules (of ``tenant`` when given), oldest first."""

    @abc.abstractmethod
    async def update_schedule(
        self, schedule_id: str, change: ScheduleChange
    ) -> ScheduleRecord | None:
        """Replace the schedule's definition (spec, task pin, params) and its cursor
        (``next_fire_at``, ``handled_until``), keeping counters and history; ``None`` if
        unknown."""

    @abc.abstractmethod
    async def delete_schedule(self, schedule_id: str) -> bool:
        """Delete the schedule and its fire rows (its runs stay); ``False`` if unknown."""

    @abc.abstractmethod
    async def due_schedules(self, now: datetime, limit: int = 100) -> list[ScheduleRecord]:
        """Schedules whose ``next_fire_at <= now``, earliest first."""

    @abc.abstractmethod
    async def buffered_schedules(self, limit: int = 100) -> list[ScheduleRecord]:
        """Schedules holding a buffered fire (``buffer_one``), to start when the run ends."""

    @abc.abstractmethod
    async def next_fire_at(self) -> datetime | None:
        """The earliest ``next_fire_at`` of all schedules (the scheduler sleeps until then)."""

    @abc.abstractmethod
    async def record_fires(self, batch: FireBatch) -> list[Run] | None:
        """Apply one scheduler step to one schedule in ONE transaction: only if its
        ``handled_until`` still equals ``batch.expected_handled_until`` (else ``None``: another
        process handled it, nothing is written). Inserts each fire row under the unique key
        ``(schedule_id, fire_key)`` (a fire already there is left alone, its run not enqueued),
        enqueues the runs of the fires that were inserted, sets the cursor, ``last_*``,
        ``buffered`` and adds to ``missed_count``/``skipped_count``. Returns the enqueued runs.
        A manual fire (``batch.manual``) leaves the cursor and ``buffered`` as they are."""

    @abc.abstractmethod
    async def start_buffered(self, schedule_id: str, fire_key: str, new: NewRun) -> Run | None:
        """Start a schedule's buffered fire: in one transaction, if the schedule still holds
        that buffered fire, enqueue ``new``, mark the fire ``started`` with the run and clear
        ``buffered``; ``None`` when another process did it first."""

    @abc.abstractmethod
    async def schedule_fires(self, schedule_id: str, limit: int = 50) -> list[FireRecord]:
        """The schedule's recorded fires, the latest first."""

    # workflows (issue 16) =======================================================================
    # A workflow definition is stored as opaque canonical JSON with its content hash (the
    # domain parses it); a workflow run's ``state`` is opaque JSON the engine owns, written
    # only by compare-and-set on ``revision`` so that two engines never both advance a run.
    @abc.abstractmethod
    async def define_workflow(self, record: WorkflowRecord) -> tuple[WorkflowRecord, bool]:
        """In one transaction: the latest version of ``(record.tenant, record.name)`` when its
        ``content_hash`` equals ``record.content_hash`` (``False``, nothing written), else a
        new immutable version ``latest + 1`` (``record.version`` is ignored) (``True``)."""

    @abc.abstractmethod
    async def get_workflow(
        self, tenant: str, name: str, version: int | None
    ) -> WorkflowRecord | None:
        """One version (the latest when ``version`` is ``None``), or ``None``."""

    @abc.abstractmethod
    async def list_workflows(self, tenant: str | None) -> list[WorkflowRecord]:
        """The latest version of every workflow (of ``tenant`` when given), by tenant, name."""

    @abc.abstractmethod
    async def workflow_versions(self, tenant: str, name: str) -> list[WorkflowRecord]:
        """Every version of a workflow, oldest first ([] when unknown)."""

    @abc.abstractmethod
    async def create_workflow_run(
        self, run: WorkflowRunRecord, events: list[WorkflowEvent]
    ) -> WorkflowRunRecord:
        """Store a new workflow run (``revision`` 1, ``seq`` assigned, strictly increasing)
        and its first events, in one transaction; an existing id raises ``Conflict``."""

    @abc.abstractmethod
    async def get_workflow_run(
        self, run_id: str, tenant: str | None = None
    ) -> WorkflowRunRecord | None:
        """The workflow run, or ``None`` if unknown (or not of ``tenant`` when given)."""

    @abc.abstractmethod
    async def list_workflow_runs(
        self,
        tenant: str | None,
        *,
        workflow: str | None = None,
        statuses: Collection[str] = (),
        limit: int = 100,
    ) -> list[WorkflowRunRecord]:
        """Workflow runs (of ``tenant``, of ``workflow``, with one of ``statuses``, each
        when given), newest first (by ``seq``), at most ``limit``."""

    @abc.abstractmethod
    async def update_workflow_run(
        self,
        run_id: str,
        expected_revision: int,
        status: str,
        state: dict[str, Any],
        now: datetime,
        events: list[WorkflowEvent],
    ) -> WorkflowRunRecord | None:
        """Compare-and-set in one transaction: only if the run's ``revision`` still equals
        ``expected_revision``, replace ``status`` and ``state``, set ``updated_at`` to ``now``,
        increment ``revision`` and append ``events``. ``None`` (nothing written) when the
        revision moved on or the run is unknown."""

    @abc.abstractmethod
    async def add_workflow_events(self, events: list[WorkflowEvent]) -> None:
        """Append events (alerts that change no state) in one transaction."""

    @abc.abstractmethod
    async def workflow_events(
        self, run_id: str, after: int = 0, limit: int = 500
    ) -> list[WorkflowEvent]:
        """The run's events with ``seq > after``, oldest first, at most ``limit``."""


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """One stored version of a task."""

    tenant: str
    name: str
    version: int
    owner: str
    content_hash: str
    definition: TaskDefinition
    created_at: datetime
    archived: bool = False


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    """A schedule and the state the scheduler keeps (see ``docs/architecture.md``)."""

    id: str
    tenant: str
    owner: str
    task: str
    #: A pinned version, or ``None``: each fire runs the task's latest version.
    task_version: int | None
    params: dict[str, Any]
    spec: ScheduleSpec
    created_at: datetime
    #: The instant up to which fires were handled (``due_fires``' ``last_fire``).
    handled_until: datetime
    #: ``None``: nothing to do (paused, or past ``end_at``).
    next_fire_at: datetime | None
    last_fire_at: datetime | None = None
    last_run_id: str | None = None
    last_outcome: str | None = None
    missed_count: int = 0
    skipped_count: int = 0
    #: The key of the fire waiting for the running run (``buffer_one``), if any.
    buffered_fire: str | None = None


@dataclass(frozen=True, slots=True)
class ScheduleChange:
    spec: ScheduleSpec
    task_version: int | None
    params: dict[str, Any]
    next_fire_at: datetime | None
    handled_until: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class FirePlan:
    """One fire as a scheduler step decided it: its outcome and the run to enqueue, if any."""

    fire_key: str
    fire_at: datetime
    #: ``started``, ``skipped``, ``buffered``, ``cancelled_previous``, ``manual``, ``error``.
    outcome: str
    run: NewRun | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class FireBatch:
    schedule_id: str
    expected_handled_until: datetime
    handled_until: datetime
    next_fire_at: datetime | None
    fires: list[FirePlan]
    missed: int
    now: datetime
    manual: bool = False


@dataclass(frozen=True, slots=True)
class FireRecord:
    schedule_id: str
    fire_key: str
    fire_at: datetime
    outcome: str
    run_id: str | None
    created_at: datetime
    message: str | None = None


@dataclass(frozen=True, slots=True)
class WorkflowRecord:
    """One stored version of a workflow definition (``definition``: canonical JSON)."""

    tenant: str
    name: str
    version: int
    owner: str
    content_hash: str
    definition: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class WorkflowRunRecord:
    """A durable workflow run: its status and the engine's ``state`` (JSON)."""

    id: str
    tenant: str
    owner: str
    workflow: str
    version: int
    params: dict[str, Any]
    status: str
    state: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    revision: int = 1
    seq: int = 0


@dataclass(frozen=True, slots=True)
class WorkflowEvent:
    """One event of a workflow run (``seq``: set by the store, increasing per store)."""

    run_id: str
    at: datetime
    kind: str
    step: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    seq: int = 0


#: Outcomes of fires that count as skipped in a schedule's status.
SKIPPED_OUTCOMES = frozenset({"skipped"})


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A webhook delivery to queue (an alert's; a run's are queued by the store)."""

    tenant: str
    url: str
    event: str
    subject: str
    body: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Delivery:
    """A webhook delivery: ``pending`` (due at ``next_at``), ``delivered`` or ``failed``.
    ``body`` is ``None`` for a run's notification (built from the run when sent)."""

    id: int
    tenant: str
    url: str
    event: str
    subject: str
    body: str | None
    status: str
    attempts: int
    created_at: datetime
    next_at: datetime | None = None
    delivered_at: datetime | None = None
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """The state of one alert: a rule and what it is about (``subject``: ``""`` for a rule
    with one state, else a tenant, task, run or schedule id)."""

    rule: str
    subject: str
    state: str  # firing, resolved
    fired_at: datetime
    updated_at: datetime
    tenant: str | None = None
    value: float | None = None
    message: str = ""
    resolved_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AlertFigures:
    """``Store.alert_figures``: ``finished`` (tenant, task or "") → (completed, failed);
    ``oldest_due`` tenant → the oldest due pending run's ``available_at``; ``running``: (run
    id, tenant, task, started_at, estimated_duration_ms); ``isolations``: isolation → count."""

    finished: dict[tuple[str, str], tuple[int, int]]
    oldest_due: dict[str, datetime]
    running: list[tuple[str, str, str | None, datetime, int]]
    isolations: dict[str, int]
