"""The App: the one place that combines store, executor and blobs into domain operations.

Every adapter (REST, MCP, CLI through the client, dashboard) calls these methods, so they behave
the same everywhere. The App also owns the background parts a process runs: workers and the
reaper (``start_background``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcpexec.alerts import AlertOps
from mcpexec.batch_ops import BatchOps, replay_conflict
from mcpexec.definitions import TaskOps, rerun_request
from mcpexec.errors import (
    ArtifactNotFound,
    Forbidden,
    InvalidRequest,
    NotFound,
    RunNotFound,
    StorageQuotaExceeded,
)
from mcpexec.event_ops import EventOps
from mcpexec.events import EventHub
from mcpexec.executor.base import Executor
from mcpexec.history import HOUR, MAX_HISTORY_HOURS, HistoryPoint
from mcpexec.history import points as history_points
from mcpexec.metrics import Metrics, StoreGauges
from mcpexec.models import (
    DEFAULT_RETRY,
    DEFAULT_TENANT,
    Artifact,
    Attempt,
    ExecSpec,
    LogChunk,
    Page,
    Run,
    RunFilter,
    RunRequest,
    Stream,
    utcnow,
)
from mcpexec.reaper import Reaper, ReaperOptions
from mcpexec.schedule_ops import ScheduleOps
from mcpexec.scheduler import Scheduler
from mcpexec.settings import Settings
from mcpexec.store.base import NewRun, RunCursor, Stats, Store, TokenRecord, WorkerInfo
from mcpexec.store.blobs import BlobStore
from mcpexec.tenancy import (
    RESERVED_LABEL_PREFIX,
    Action,
    Actor,
    Decision,
    Scope,
    decide,
    hash_token,
    scope_of,
)
from mcpexec.tenant_ops import TenantOps
from mcpexec.tools_service import ToolRunExecutor, ToolsService
from mcpexec.tracing import TRACE_LABEL, Tracing
from mcpexec.webhooks import Webhooks
from mcpexec.worker import Worker, WorkerOptions
from mcpexec.workflows.ops import WorkflowOps

# Stats, TokenRecord and WorkerInfo are what App methods return: re-exported so that adapters
# can name them without importing the store (the layer check forbids that).
__all__ = ["App", "Principal", "Stats", "TokenRecord", "WorkerInfo", "WorkerSlots", "hash_token"]

log = logging.getLogger(__name__)

MAX_WAIT_S = 300.0
MIB = 1024 * 1024
#: How often a waiter re-reads the store when no in-process event arrives (another process may
#: be running the run).
POLL_S = 0.5


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the principal a token authenticates (its role and tenant)."""

    token_id: str
    name: str
    role: str
    tenant: str
    #: The principal's id (a run's owner); tokens stored before issue 10 are their own.
    principal_id: str = ""

    @property
    def id(self) -> str:
        return self.principal_id or self.token_id

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def actor(self) -> Actor:
        return Actor(id=self.id, role=self.role, tenant=self.tenant)


@dataclass(frozen=True, slots=True)
class WorkerSlots:
    total: int
    busy: int


class App:
    def __init__(
        self, settings: Settings, store: Store, executor: Executor, blobs: BlobStore
    ) -> None:
        self.settings = settings
        self.store = store
        self.executor = executor
        self.blobs = blobs
        self.events = EventHub()
        #: Prometheus counters of this process (issue 17, metrics.py).
        self.metrics = Metrics()
        #: The status of the spool directory this process watches (set by the spool while it
        #: runs, ``serve --spool DIR``), for the dashboard; ``None`` without one.
        self.spool_status_reader: Callable[[], dict[str, Any]] | None = None
        self.metrics.tracing = Tracing.from_endpoint(
            settings.otel_endpoint, settings.otel_service_name
        )
        self.workers: list[Worker] = []
        self._background: list[asyncio.Task[None]] = []
        # Task definitions and schedules (issue 11): definitions.py, schedule_ops.py.
        self.tasks = TaskOps(self)
        self.schedules = ScheduleOps(self)
        self.scheduler = Scheduler(self)
        # Tenants, tokens, quotas and the audit log (issue 10): tenant_ops.py.
        self.tenancy = TenantOps(self)
        # Tools of downstream MCP servers and fs (issue 14): tools_service.py.
        self.tools = ToolsService(settings, self.metrics)
        # Workflows: DAGs of steps with checkpoints, gates and rollback (issue 16).
        self.workflows = WorkflowOps(self)
        # The durable event log (issue 17): event_ops.py.
        self.event_log = EventOps(self)
        # Webhooks: the SSRF check at submit and the durable delivery loop (issue 17).
        self.webhooks = Webhooks(settings, store, self.events)
        # Alert rules evaluated once per store under a lease (issue 17): alerts.py.
        self.alerts = AlertOps(self)
        # The batch submit (issue 12): batch_ops.py.
        self.batch = BatchOps(self)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shutting_down = False

    @property
    def isolation(self) -> str:
        """The isolation this process applies to runs (reported by /health and at start)."""
        return self.executor.isolation

    def worker_slots(self) -> WorkerSlots:
        """Worker slots in this process and how many are busy (``/health``, ``/metrics``)."""
        return WorkerSlots(
            total=sum(w.concurrency for w in self.workers),
            busy=sum(w.running for w in self.workers),
        )

    # -- lifecycle ----------------------------------------------------------------------------
    async def open(self, *, gateway: bool = True) -> None:
        """Open the store and, with ``gateway`` and a gateway configured (``mcp_config``,
        ``sandbox_directory``), start the gateway (its eager servers start now)."""
        self._loop = asyncio.get_running_loop()
        await self.store.open()
        if gateway:
            await self.tools.start()

    @property
    def shutting_down(self) -> bool:
        """``begin_shutdown`` was called: waiters return what they have instead of waiting."""
        return self._shutting_down

    def begin_shutdown(self) -> None:
        """The first step of a shutdown, as soon as the signal arrives (before the HTTP drain):
        workers stop claiming and start their grace period, long-polls (``wait``) return the
        run as it is and followers (``follow_logs``) end with it. Idempotent; ``close`` still
        does the rest."""
        if self._shutting_down:
            return
        self._shutting_down = True
        log.info("shutting down: no new attempts start")
        for worker in self.workers:
            worker.stop()
        self.events.all_runs_changed()

    def begin_shutdown_threadsafe(self) -> None:
        """``begin_shutdown`` from a signal handler or another thread (a no-op before
        ``open``)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.begin_shutdown)

    async def start_background(
        self, *, workers: int, reaper: bool = True, scheduler: bool = False
    ) -> None:
        """Start ``workers`` worker slots (one Worker), the reaper and (``scheduler``) the
        schedule loop and the workflow engine in this process."""
        if scheduler:
            loop = asyncio.create_task(self.scheduler.run_forever(), name="scheduler")
            self._background.append(loop)
            engine = asyncio.create_task(self.workflows.engine.run_forever(), name="workflows")
            self._background.append(engine)
        if workers > 0:
            await self.executor.start()
            options = WorkerOptions.from_settings(self.settings, workers)
            # Tool runs carry their server's label: only workers with that server claim them.
            options = dataclasses.replace(options, extra_labels=self.tools.worker_labels)
            # Tool runs go to the gateway, the rest to the executor (issue 14).
            executor = ToolRunExecutor(self.executor, self.tools)
            worker = Worker(
                self.store, executor, self.blobs, self.events, options, metrics=self.metrics
            )
            self.workers.append(worker)
            self._background.append(asyncio.create_task(worker.run(), name="worker"))
        if reaper:
            reaping = ReaperOptions.from_settings(self.settings)
            housekeeping = Reaper(
                self.store, self.blobs, self.events, reaping, metrics=self.metrics
            )
            self._background.append(asyncio.create_task(housekeeping.run_forever(), name="reaper"))
            hooks = asyncio.create_task(self.webhooks.run_forever(), name="webhooks")
            alerting = asyncio.create_task(self.alerts.run_forever(), name="alerts")
            self._background += [hooks, alerting]

    async def close(self) -> None:
        """Stop workers gracefully (see ``Worker.stop``), then the reaper, then the store."""
        self.begin_shutdown()
        for task in self._background:
            if task.get_name() != "worker":
                task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()
        if self.workers:
            await self.executor.stop()
        self.workers.clear()
        await self.tools.close()
        await self.store.close()
        await asyncio.to_thread(self.metrics.tracing.shutdown)  # exports the last spans

    # -- auth ---------------------------------------------------------------------------------
    async def authenticate(self, token: str | None) -> Principal:
        """The principal of a bearer token; unknown, revoked and expired tokens are refused
        (compared through the hash: the token itself is never stored or logged)."""
        return await self.tenancy.authenticate(token)

    async def authenticate_session(self, token_hash: str) -> Principal:
        """The principal of a dashboard session: the token it was opened with, by its hash
        (revoked or expired since: refused, as for a bearer token)."""
        return await self.tenancy.authenticate_hash(token_hash)

    def session_key(self) -> bytes:
        """The key that signs dashboard sessions and CSRF tokens: ``$MCPEXEC_HOME/session-key``
        (0600), made by the first process that needs it, shared by every process on the home
        (a session opened on one ``serve`` is valid on the others)."""
        path = self.settings.home / "session-key"
        if not path.exists():
            # written aside, then linked into place: another process sees no key or all of it
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            aside = path.with_name(f".session-key.{uuid.uuid4().hex}")
            fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32) + "\n")
            try:
                os.link(aside, path)
            except FileExistsError:
                pass  # another process was first: its key is the one
            finally:
                aside.unlink()
        key = _read_token_file(path)
        if key is None or len(key) < 32:
            raise InvalidRequest(f"{path} is empty or too short: remove it to make a new key")
        return key.encode()

    async def create_token(
        self, name: str, role: str = "admin", tenant: str = DEFAULT_TENANT
    ) -> str:
        """A new token of a new principal (no checks: for ``serve``'s first start and tests;
        the API's ``tenancy.create_token`` checks who asks)."""
        token, _ = await self.tenancy.issue_token(name, role, tenant)
        return token

    async def ensure_admin_token(self, path: Path) -> str:
        """Return the admin token kept in ``path`` (mode 0600), creating it on first start. A
        token file whose token the store does not know (new database) is replaced."""
        existing = _read_token_file(path)
        if existing and await self.store.token_by_hash(hash_token(existing)) is not None:
            return existing
        token = await self.create_token("admin (created by serve)")
        _write_token_file(path, token)
        return token

    # -- runs ---------------------------------------------------------------------------------
    async def submit(
        self,
        request: RunRequest,
        principal: Principal,
        rerun_of: str | None = None,
        *,
        reserved: Collection[str] = (),
        traceparent: str | None = None,
    ) -> tuple[Run, bool]:
        """Durably enqueue a run. Returns ``(run, created)``; ``created`` is ``False`` when the
        idempotency key matched an earlier run, which is returned unchanged. Labels under
        ``mcp/`` are mcpexec's own: a caller sets none, an adapter only the ``reserved`` keys
        it names (the MCP tasks binding's ``mcp/task``). A full queue raises
        ``QuotaExceeded`` (429). ``traceparent`` (W3C, from the caller) continues its trace
        (``tracing.py``)."""
        new = await self.prepare(
            request, principal, rerun_of, reserved=reserved, traceparent=traceparent
        )
        run, created = await self.enqueue(new, principal)
        conflict = None if created else replay_conflict(new, run)
        if conflict is not None:
            raise conflict
        return run, created

    async def prepare(
        self,
        request: RunRequest,
        principal: Principal,
        rerun_of: str | None = None,
        *,
        reserved: Collection[str] = (),
        traceparent: str | None = None,
        limit_spec: Callable[[ExecSpec], Awaitable[ExecSpec]] | None = None,
    ) -> NewRun:
        """The run ``request`` asks for, checked (access, labels, spec, webhook, task and its
        parameters) and put under the tenant's limits, not yet stored: ``submit`` and the
        batch submit (``batch_ops``) enqueue it. ``limit_spec`` replaces the tenant lookup of
        ``tenancy.limit_spec`` (a batch looks its tenant up once)."""
        trace = self.metrics.tracing.run_label(traceparent)
        if trace is not None:
            request = request.model_copy(update={"labels": {**request.labels, TRACE_LABEL: trace}})
            reserved = (*reserved, TRACE_LABEL)
        if request.notify is not None:
            self._require_submit(principal)
            await self.webhooks.check(request.notify.webhook)
        if request.task is not None:  # a run of a defined task (definitions.py)
            return await self.tasks.prepare(request, principal, rerun_of, reserved)
        self._require_submit(principal)
        self.check_labels(request.labels, reserved=reserved)
        problem = self.executor.check_spec(request)
        if problem is not None:
            raise InvalidRequest(problem)
        if request.tool is not None:  # unknown_tool / invalid_arguments now, where known
            self.tools.check_tool_run(request.tool)
        spec = request.exec_spec()
        if limit_spec is None:
            spec = await self.tenancy.limit_spec(principal.tenant, spec)
        else:
            spec = await limit_spec(spec)
        return NewRun(
            id=uuid.uuid4().hex,
            tenant=principal.tenant,
            spec=spec,
            retry=request.retry or DEFAULT_RETRY,
            priority=request.priority,
            labels=dict(request.labels),
            created_at=utcnow(),
            run_at=request.run_at,
            idempotency_key=request.idempotency_key,
            rerun_of=rerun_of,
            worker_labels=self.tools.run_worker_labels(request.tool, request.worker_labels),
            notify=request.notify,
        )

    async def enqueue(self, new: NewRun, principal: Principal) -> tuple[Run, bool]:
        """The one way a new run gets in, for every submitter (a request, a task's run, a
        workflow's step): the storage budget, the owner and queue limits (``stamp``), the
        durable enqueue, the metric and the workers' wake-up. ``(run, created)`` as
        ``submit``; the caller has validated ``new`` and put it under the tenant's limits."""
        await self._check_storage(new.tenant)
        run, created = await self.store.enqueue(self.stamp(new, principal))
        if created:
            self.metrics.submitted(run)
            self.events.work_available()
        return run, created

    async def _check_storage(self, tenant: str) -> None:
        """Refuse a submit once the global or the tenant's storage budget is used up (the
        store's counters: one lookup each). Runs already accepted keep running; each is
        bounded by its own output and artifact caps."""
        budgets = (
            (self.settings.max_storage_mb, None, "max_storage_mb"),
            (self.settings.tenant_max_storage_mb, tenant, "tenant_max_storage_mb"),
        )
        for budget_mb, scope, setting in budgets:
            if budget_mb is None:
                continue
            used = await self.store.storage_used(scope)
            if used >= budget_mb * MIB:
                whose = "the server's" if scope is None else f"tenant {tenant!r}'s"
                raise StorageQuotaExceeded(
                    f"{whose} storage budget is used up ({used / MIB:.1f} of {budget_mb:g} MiB"
                    f" of logs and artifacts, setting {setting}); retention frees it",
                    setting=setting,
                    used_bytes=used,
                    budget_bytes=int(budget_mb * MIB),
                )

    def stamp(self, new: NewRun, principal: Principal) -> NewRun:
        """``new`` with its owner, the token for the audit log and the tenant's default queue
        limit (the store checks it in the enqueue's transaction)."""
        return dataclasses.replace(
            new,
            owner=principal.id,
            token_id=principal.token_id,
            default_max_queued=self.settings.tenant_max_queued,
            global_max_queued=self.settings.max_queued,
        )

    @staticmethod
    def check_labels(labels: Mapping[str, str], *, reserved: Collection[str] = ()) -> None:
        for key in labels:
            if key.startswith(RESERVED_LABEL_PREFIX) and key not in reserved:
                raise InvalidRequest(
                    f"label {key!r}: labels starting {RESERVED_LABEL_PREFIX!r} are set by "
                    "mcpexec itself",
                    field=f"labels.{key}",
                )

    def check_access(
        self,
        principal: Principal,
        action: Action,
        tenant: str | None = None,
        owner: str | None = None,
        *,
        what: str = "run",
        ident: str = "",
    ) -> None:
        """The one access rule of every surface (``tenancy.decide``): a resource of another
        tenant is not found (404), one the role may not touch is forbidden (403)."""
        decision = decide(principal.actor, action, tenant, owner)
        if decision is Decision.NOT_FOUND:
            if what == "run":
                raise RunNotFound(f"no run with id {ident!r}", run_id=ident)
            raise NotFound(f"no {what} {ident!r}")
        if decision is Decision.FORBIDDEN:
            if tenant is not None and owner is not None and owner != principal.id:
                why = f"role {principal.role!r} may {action.value} only its own runs"
            else:
                why = f"role {principal.role!r} may not {action.value.replace('_', ' ')}"
            raise Forbidden(why, action=action.value, role=principal.role)

    async def get(self, run_id: str, principal: Principal, action: Action = Action.READ) -> Run:
        run = await self.store.get_run(run_id, self._tenant_scope(principal))
        if run is None:
            raise RunNotFound(f"no run with id {run_id!r}", run_id=run_id)
        self.check_access(principal, action, run.tenant, run.owner, ident=run_id)
        return run

    async def wait(self, run_id: str, principal: Principal, timeout_s: float) -> Run:
        """The run once it is terminal, or as it is after ``timeout_s`` (capped) or once this
        process is shutting down (``begin_shutdown``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(max(timeout_s, 0.0), MAX_WAIT_S)
        while True:
            run = await self.get(run_id, principal)
            remaining = deadline - loop.time()
            # no await between this check and wait_run's registration: a shutdown wakes it
            if run.terminal or remaining <= 0 or self._shutting_down:
                return run
            await self.events.wait_run(run_id, min(remaining, POLL_S))

    async def list_runs(
        self, principal: Principal, filter: RunFilter, limit: int = 50, cursor: str | None = None
    ) -> Page:
        self.check_access(principal, Action.READ)
        scope: dict[str, str] = {}
        if not principal.is_admin:  # an admin may filter by tenant; anyone else sees their own
            if filter.tenant not in (None, principal.tenant):
                return Page(runs=[])
            scope["tenant"] = principal.tenant
        if scope_of(principal.role, Action.READ) is Scope.OWN:
            scope["owner"] = principal.id
        scoped = filter.model_copy(update=scope)
        return await self.store.list_runs(scoped, max(1, min(limit, 500)), _parse_cursor(cursor))

    async def cancel(self, run_id: str, principal: Principal) -> Run:
        """Request cancellation (idempotent). A pending run is cancelled at once; a running one
        is killed by its worker (tree, grace, SIGKILL) and then reported ``cancelled``."""
        before = await self.get(run_id, principal, Action.CANCEL)
        now = utcnow()
        run = await self.store.request_cancel(run_id, now, self._tenant_scope(principal))
        if run is None:
            raise RunNotFound(f"no run with id {run_id!r}", run_id=run_id)
        await self.tenancy.audit(principal, "cancel", run.id, tenant=run.tenant, at=now)
        if run.status == "running":
            self.events.cancel_requested(run_id)
        elif run.status == "cancelled" and before.status == "pending":  # it ends here
            self.metrics.finished(run)
        self.events.run_changed(run_id)
        return run

    async def rerun(self, run_id: str, principal: Principal) -> Run:
        """A new run with the same spec, retry policy, priority and labels."""
        old = await self.get(run_id, principal)
        if old.task is not None:  # the same task version and parameters
            run, _ = await self.submit(rerun_request(old), principal, rerun_of=old.id)
            return run
        request = RunRequest.model_validate(
            {
                **old.spec.model_dump(exclude_none=True),
                "retry": old.retry,
                "priority": old.priority,
                "labels": _unreserved(old.labels),
                "worker_labels": old.worker_labels,
            }
        )
        run, _ = await self.submit(request, principal, rerun_of=old.id)
        return run

    async def attempts(self, run_id: str, principal: Principal) -> list[Attempt]:
        await self.get(run_id, principal)
        return await self.store.attempts(run_id)

    # -- logs ---------------------------------------------------------------------------------
    async def read_logs(
        self, run_id: str, principal: Principal, stream: Stream, offset: int, limit: int
    ) -> tuple[bytes, int, bool]:
        """Bytes of a stream from ``offset``; returns (data, next offset, complete). ``complete``
        means the run is terminal and nothing follows."""
        run = await self.get(run_id, principal)
        data, next_offset = await self.store.read_log(run_id, stream, offset, limit)
        complete = False
        if run.terminal and len(data) < limit:
            complete = True
        return data, next_offset, complete

    async def follow_logs(
        self,
        run_id: str,
        principal: Principal,
        streams: tuple[Stream, ...] = (Stream.STDOUT, Stream.STDERR),
        offsets: dict[Stream, int] | None = None,
        chunk: int = 256 * 1024,
    ) -> AsyncIterator[LogChunk | Run]:
        """Yield log chunks as they arrive, then the run, then stop. The run is terminal, unless
        this process is shutting down: then it is the run as it is (not terminal), after the
        output read so far."""
        positions = {s: (offsets or {}).get(s, 0) for s in streams}
        while True:
            run = await self.get(run_id, principal)
            progressed = False
            for stream in streams:
                data, nxt = await self.store.read_log(run_id, stream, positions[stream], chunk)
                if data:
                    yield LogChunk(stream=stream, offset=positions[stream], data=data)
                    positions[stream] = nxt
                    progressed = True
            if run.terminal and not progressed:
                yield run
                return
            if self._shutting_down and not run.terminal:
                yield run
                return
            if progressed:
                continue
            await self.events.wait_run(run_id, POLL_S)

    # -- artifacts ----------------------------------------------------------------------------
    async def artifacts(self, run_id: str, principal: Principal) -> list[Artifact]:
        await self.get(run_id, principal)
        return await self.store.list_artifacts(run_id)

    async def artifact_bytes(
        self,
        run_id: str,
        name: str,
        principal: Principal,
        limit: int | None = None,
        offset: int = 0,
    ) -> tuple[Artifact, AsyncIterator[bytes]]:
        """The artifact's record and its bytes (at most ``limit`` from ``offset``), streamed from
        the blob store in chunks (from this machine's directory or the PostgreSQL database)."""
        for artifact in await self.artifacts(run_id, principal):
            if artifact.name == name and await self.blobs.exists(run_id, name):
                return artifact, self.blobs.read(run_id, name, offset=offset, limit=limit)
        raise ArtifactNotFound(f"run {run_id} has no artifact {name!r}", run_id=run_id, name=name)

    # -- admin --------------------------------------------------------------------------------
    async def stats(self, principal: Principal) -> Stats:
        self.check_access(principal, Action.READ)
        return await self.store.stats(self._tenant_scope(principal))

    async def run_history(self, principal: Principal, hours: int = 24) -> list[HistoryPoint]:
        """The last ``hours`` hours (this one included), oldest first: runs finished by outcome
        and latency quantiles, from the store's hourly rollup (``history``)."""
        self.check_access(principal, Action.READ)
        hours = max(1, min(hours, MAX_HISTORY_HOURS))
        start = utcnow() - (hours - 1) * HOUR
        found = await self.store.run_history(start, self._tenant_scope(principal))
        return history_points(found, start, hours)

    async def spool_status(self, principal: Principal) -> dict[str, Any] | None:
        """Counts per folder, the daemons and the jobs in flight of the spool this process
        watches (read from the directory), or ``None`` when it watches none. Admin only."""
        self._require_admin(principal)
        reader = self.spool_status_reader
        return None if reader is None else await asyncio.to_thread(reader)

    async def list_workers(self, principal: Principal) -> list[WorkerInfo]:
        self._require_admin(principal)
        return await self.store.list_workers()

    async def metrics_exposition(self, principal: Principal | None) -> bytes:
        """The Prometheus text of ``/metrics``: this process's counters and histograms, and
        the store's gauges read now (global: the same from every process on the store).
        Needs an admin (the values name every tenant); ``None`` when the setting
        ``metrics_public`` opened the endpoint."""
        if principal is not None:
            self._require_admin(principal)
        stats = await self.store.stats(None)
        by_tenant = {}
        for tenant in await self.store.list_tenants():
            by_tenant[tenant.id] = await self.store.tenant_load(tenant.id)
        workers = await self.store.list_workers()
        now = utcnow()
        alive_within = 2 * self.settings.lease_s
        alive = [w for w in workers if (now - w.heartbeat_at).total_seconds() <= alive_within]
        slots = self.worker_slots()
        figures = await self.store.alert_figures(now, now)
        gauges = StoreGauges(
            oldest_pending_s={
                tenant: max((now - due).total_seconds(), 0.0)
                for tenant, due in figures.oldest_due.items()
            },
            by_status=stats.by_status,
            by_tenant=by_tenant,
            workers=len(workers),
            workers_alive=len(alive),
            worker_slots=slots.total,
            worker_busy=slots.busy,
        )
        return self.metrics.exposition(gauges)

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _tenant_scope(principal: Principal) -> str | None:
        return None if principal.is_admin else principal.tenant

    @staticmethod
    def _require_admin(principal: Principal) -> None:
        if not principal.is_admin:
            raise Forbidden("this needs an admin token")

    def _require_submit(self, principal: Principal) -> None:
        self.check_access(principal, Action.SUBMIT)


def _unreserved(labels: Mapping[str, str]) -> dict[str, str]:
    """A rerun's labels: mcpexec's own (``mcp/``) stay with the original."""
    return {k: v for k, v in labels.items() if not k.startswith(RESERVED_LABEL_PREFIX)}


def _read_token_file(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def _write_token_file(path: Path, token: str) -> None:
    """Write atomically with mode 0600 from the start (never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    os.replace(tmp, path)


def _parse_cursor(cursor: str | None) -> RunCursor | None:
    if cursor is None or cursor == "":
        return None
    try:
        return RunCursor.parse(cursor)
    except ValueError:
        raise InvalidRequest("cursor is not one this server issued", cursor=cursor) from None
