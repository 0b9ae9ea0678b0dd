"""The App: the one place that combines store, executor and blobs into domain operations.

Every adapter (REST, MCP, CLI through the client, dashboard) calls these methods, so they behave
the same everywhere. The App also owns the background parts a process runs: workers and the
reaper (``start_background``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from mcpexec.errors import ArtifactNotFound, Forbidden, InvalidRequest, RunNotFound, Unauthorized
from mcpexec.events import EventHub
from mcpexec.executor.base import Executor
from mcpexec.models import (
    DEFAULT_RETRY,
    DEFAULT_TENANT,
    Artifact,
    Attempt,
    LogChunk,
    Page,
    Run,
    RunFilter,
    RunRequest,
    Stream,
    utcnow,
)
from mcpexec.reaper import Reaper
from mcpexec.settings import Settings
from mcpexec.store.base import NewRun, Stats, Store, TokenRecord, WorkerInfo
from mcpexec.store.blobs import BlobStore
from mcpexec.worker import Worker

log = logging.getLogger(__name__)

MAX_WAIT_S = 300.0
#: How often a waiter re-reads the store when no in-process event arrives (another process may
#: be running the run).
POLL_S = 0.5


@dataclass(frozen=True, slots=True)
class Principal:
    token_id: str
    name: str
    role: str
    tenant: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def hash_token(token: str) -> str:
    # Tokens are 256-bit random strings, so a fast unsalted hash is enough: there is nothing to
    # brute-force, and lookups by hash stay O(1).
    return hashlib.sha256(token.encode()).hexdigest()


class App:
    def __init__(
        self, settings: Settings, store: Store, executor: Executor, blobs: BlobStore
    ) -> None:
        self.settings = settings
        self.store = store
        self.executor = executor
        self.blobs = blobs
        self.events = EventHub()
        self.workers: list[Worker] = []
        self._background: list[asyncio.Task[None]] = []

    @property
    def isolation(self) -> str:
        """The isolation this process applies to runs (reported by /health and at start)."""
        return self.executor.isolation

    # -- lifecycle ----------------------------------------------------------------------------
    async def open(self) -> None:
        await self.store.open()

    async def start_background(self, *, workers: int, reaper: bool = True) -> None:
        """Start ``workers`` worker slots (one Worker) and the reaper in this process."""
        if workers > 0:
            await self.executor.start()
            worker = Worker(
                self.store, self.executor, self.blobs, self.events, self.settings, workers
            )
            self.workers.append(worker)
            self._background.append(asyncio.create_task(worker.run(), name="worker"))
        if reaper:
            housekeeping = Reaper(self.store, self.blobs, self.events, self.settings)
            self._background.append(asyncio.create_task(housekeeping.run_forever(), name="reaper"))

    async def close(self) -> None:
        """Stop workers gracefully (see ``Worker.stop``), then the reaper, then the store."""
        for worker in self.workers:
            worker.stop()
        for task in self._background:
            if task.get_name() != "worker":
                task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()
        if self.workers:
            await self.executor.stop()
        self.workers.clear()
        await self.store.close()

    # -- auth ---------------------------------------------------------------------------------
    async def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise Unauthorized()
        record = await self.store.token_by_hash(hash_token(token))
        if record is None or record.revoked:
            raise Unauthorized("the bearer token is unknown or revoked")
        return Principal(record.id, record.name, record.role, record.tenant)

    async def create_token(
        self, name: str, role: str = "admin", tenant: str = DEFAULT_TENANT
    ) -> str:
        token = "mcpx_" + secrets.token_urlsafe(32)
        record = TokenRecord(
            id=uuid.uuid4().hex[:12],
            name=name,
            token_hash=hash_token(token),
            role=role,
            tenant=tenant,
            created_at=utcnow(),
        )
        await self.store.add_token(record)
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
        self, request: RunRequest, principal: Principal, rerun_of: str | None = None
    ) -> tuple[Run, bool]:
        """Durably enqueue a run. Returns ``(run, created)``; ``created`` is ``False`` when the
        idempotency key matched an earlier run, which is returned unchanged."""
        self._require_submit(principal)
        problem = self.executor.check_spec(request)
        if problem is not None:
            raise InvalidRequest(problem)
        new = NewRun(
            id=uuid.uuid4().hex,
            tenant=principal.tenant,
            spec=request.exec_spec(),
            retry=request.retry or DEFAULT_RETRY,
            priority=request.priority,
            labels=dict(request.labels),
            created_at=utcnow(),
            run_at=request.run_at,
            idempotency_key=request.idempotency_key,
            rerun_of=rerun_of,
        )
        run, created = await self.store.enqueue(new)
        if created:
            self.events.work_available()
        return run, created

    async def get(self, run_id: str, principal: Principal) -> Run:
        run = await self.store.get_run(run_id, self._tenant_scope(principal))
        if run is None:
            raise RunNotFound(f"no run with id {run_id!r}", run_id=run_id)
        return run

    async def wait(self, run_id: str, principal: Principal, timeout_s: float) -> Run:
        """The run once it is terminal, or as it is after ``timeout_s`` (capped)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(max(timeout_s, 0.0), MAX_WAIT_S)
        while True:
            run = await self.get(run_id, principal)
            remaining = deadline - loop.time()
            if run.terminal or remaining <= 0:
                return run
            await self.events.wait_run(run_id, min(remaining, POLL_S))

    async def list_runs(
        self, principal: Principal, filter: RunFilter, limit: int = 50, cursor: str | None = None
    ) -> Page:
        scoped = filter.model_copy(update={"tenant": self._tenant_scope(principal)})
        seq = _parse_cursor(cursor)
        return await self.store.list_runs(scoped, max(1, min(limit, 500)), seq)

    async def cancel(self, run_id: str, principal: Principal) -> Run:
        """Request cancellation (idempotent). A pending run is cancelled at once; a running one
        is killed by its worker (tree, grace, SIGKILL) and then reported ``cancelled``."""
        run = await self.store.request_cancel(run_id, utcnow(), self._tenant_scope(principal))
        if run is None:
            raise RunNotFound(f"no run with id {run_id!r}", run_id=run_id)
        if run.status == "running":
            self.events.cancel_requested(run_id)
        self.events.run_changed(run_id)
        return run

    async def rerun(self, run_id: str, principal: Principal) -> Run:
        """A new run with the same spec, retry policy, priority and labels."""
        old = await self.get(run_id, principal)
        request = RunRequest.model_validate(
            {
                **old.spec.model_dump(exclude_none=True),
                "retry": old.retry,
                "priority": old.priority,
                "labels": old.labels,
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
        """Yield log chunks as they arrive, then the terminal run, then stop."""
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
            if progressed:
                continue
            if run.terminal:
                yield run
                return
            await self.events.wait_run(run_id, POLL_S)

    # -- artifacts ----------------------------------------------------------------------------
    async def artifacts(self, run_id: str, principal: Principal) -> list[Artifact]:
        await self.get(run_id, principal)
        return await self.store.list_artifacts(run_id)

    async def artifact_path(
        self, run_id: str, name: str, principal: Principal
    ) -> tuple[Artifact, Path]:
        for artifact in await self.artifacts(run_id, principal):
            if artifact.name == name:
                path = await self.blobs.path(run_id, name)
                if path is not None:
                    return artifact, path
        raise ArtifactNotFound(f"run {run_id} has no artifact {name!r}", run_id=run_id, name=name)

    # -- admin --------------------------------------------------------------------------------
    async def stats(self, principal: Principal) -> Stats:
        return await self.store.stats(self._tenant_scope(principal))

    async def list_workers(self, principal: Principal) -> list[WorkerInfo]:
        self._require_admin(principal)
        return await self.store.list_workers()

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _tenant_scope(principal: Principal) -> str | None:
        return None if principal.is_admin else principal.tenant

    @staticmethod
    def _require_admin(principal: Principal) -> None:
        if not principal.is_admin:
            raise Forbidden("this needs an admin token")

    @staticmethod
    def _require_submit(principal: Principal) -> None:
        if principal.role not in ("admin", "operator", "submitter"):
            raise Forbidden(f"role {principal.role!r} may not submit runs")


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


def _parse_cursor(cursor: str | None) -> int | None:
    if cursor is None or cursor == "":
        return None
    try:
        value = int(cursor)
    except ValueError:
        raise InvalidRequest("cursor is not one this server issued", cursor=cursor) from None
    return value
