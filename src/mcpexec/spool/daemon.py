"""The spool daemon: an adapter that turns job files into runs of the App and runs back into
result files.

``Spool(app, DIR).run()`` watches ``DIR/pending/`` (inotify through watchfiles, plus a rescan
every ``spool_rescan_s`` as a safety net), claims jobs in priority-then-oldest order while fewer
than ``spool_parallel`` are in flight, submits each with an idempotency key derived from the
file, follows the run to its end and writes the result atomically into ``completed/`` or
``failed/``. On start it first resumes every orphaned claim in ``.processing/``. It uses only
App methods, never the store or executor.
"""

from __future__ import annotations

import asyncio
import logging
import os
from asyncio import FIRST_COMPLETED
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import watchfiles

from mcpexec.aio import wait_event
from mcpexec.app import App, Principal
from mcpexec.errors import IdempotencyConflict, InvalidRequest, McpexecError
from mcpexec.models import Run, RunRequest, Stream
from mcpexec.spool import finish
from mcpexec.spool.eventlog import DaemonLog, LogFormat
from mcpexec.spool.files import (
    Busy,
    Claimed,
    Gone,
    NotRegular,
    SpoolDirs,
    adopt,
    claim,
    ignore_sigio,
    leases_usable,
)
from mcpexec.spool.formats import InvalidJob, InvalidSpec, is_candidate, parse_job
from mcpexec.spool.retention import purge_old
from mcpexec.spool.scan import PendingScanner
from mcpexec.spool.state import StateFile
from mcpexec.spool.status import spool_status

log = logging.getLogger(__name__)

#: How often a followed run is re-read when no in-process event arrives (a run executed by
#: another process's workers).
FOLLOW_POLL_S = 0.5
#: How soon a file that was still being written is looked at again.
BUSY_RECHECK_S = 0.05
RETENTION_EVERY_S = 3600.0
#: watchfiles batches events for ``step`` ms: the pickup latency floor.
WATCH_STEP_MS = 5
READ_CHUNK = 1 << 20


def _duration(run: Run) -> float | None:
    if run.started_at is None or run.finished_at is None:
        return None
    return round((run.finished_at - run.started_at).total_seconds(), 3)


def spool_principal(tenant: str, root: Path) -> Principal:
    """Who spool jobs run as: the local operator of the configured tenant, like stdio MCP
    (whoever can write the spool directory can already reach the store)."""
    return Principal(
        token_id="spool",  # noqa: S106 - an id, not a secret
        name=f"spool {root}",
        role="operator",
        tenant=tenant,
    )


@asynccontextmanager
async def spool_running(
    app: App, root: Path, *, log_format: LogFormat = "human", ready_timeout_s: float = 60.0
) -> AsyncIterator[Spool]:
    """Run a spool over ``root`` as a background task of an already started App (what
    ``serve --spool DIR`` does inside its lifespan); stopped, and awaited, on exit."""
    spool = Spool(app, root, log_format=log_format)
    task = asyncio.create_task(spool.run(), name="spool")
    ready = asyncio.create_task(spool.ready.wait())
    await asyncio.wait({task, ready}, timeout=ready_timeout_s, return_when=FIRST_COMPLETED)
    ready.cancel()
    if task.done():
        task.result()  # raises what stopped it
    if not spool.ready.is_set():
        task.cancel()
        raise TimeoutError(f"the spool on {root} was not ready within {ready_timeout_s}s")
    app.spool_status_reader = lambda: spool_status(root).as_dict()  # the dashboard's page
    try:
        yield spool
    finally:
        app.spool_status_reader = None
        spool.stop()
        await task


class Spool:
    def __init__(self, app: App, root: Path, *, log_format: LogFormat = "human") -> None:
        s = app.settings
        self.app = app
        self.dirs = SpoolDirs(Path(root).absolute())
        self.parallel = s.spool_parallel or max(s.workers, 1)
        self.principal = spool_principal(s.spool_tenant, self.dirs.root)
        self.log_format: LogFormat = log_format
        self._max_bytes = s.spool_max_job_bytes
        self._scanner = PendingScanner(self.dirs, self._max_bytes)
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._finishing: set[str] = set()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._dirty = True
        self._queue: list[str] = []
        self._use_lease = False
        self._busy_seen = False
        self.events = DaemonLog(self.dirs.log_path, log_format)
        self.state = StateFile(self.dirs)
        #: Set once recovery is done and the watcher is up (tests and ``serve`` await it).
        self.ready = asyncio.Event()

    # -- lifecycle ----------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    async def run(self, *, drain: bool = False) -> None:
        """Run until :meth:`stop` (or cancellation). Jobs in flight stay claimed in
        ``.processing/``; their runs go on in the engine and the next start writes their
        results. With ``drain``, return once every job found in ``pending/`` (and every
        orphaned claim) has its result written and nothing is left to take."""
        warnings = await asyncio.to_thread(self.dirs.create)
        self.events.open()
        ignore_sigio()
        self._use_lease = leases_usable()
        for warning in warnings:
            log.warning("%s", warning)
            self.events.event("warning", message=warning)
        self.events.event(
            "started", dir=str(self.dirs.root), parallel=self.parallel, tenant=self.principal.tenant
        )
        watcher = asyncio.create_task(self._watch(), name="spool-watch")
        housekeeping = asyncio.create_task(self._retention(), name="spool-retention")
        state_writer = asyncio.create_task(self.state.run(), name="spool-state")
        loop = asyncio.get_running_loop()
        rescan_s = self.app.settings.spool_rescan_s
        try:
            await self._adopt_orphans()
            self.ready.set()
            next_rescan = loop.time() + rescan_s
            while not self._stop.is_set():
                await self._fill()
                if drain and self._drained():
                    break
                timeout = BUSY_RECHECK_S if self._busy_seen else next_rescan - loop.time()
                await wait_event(self._wake, timeout)
                self._wake.clear()
                if loop.time() >= next_rescan:
                    # The safety net: a missed inotify event, or a claim whose owner died.
                    self._dirty = True
                    await self._adopt_orphans()
                    next_rescan = loop.time() + rescan_s
        finally:
            self._stop.set()
            in_flight = len(self._inflight)
            tasks = (watcher, housekeeping, state_writer, *self._inflight.values())
            for task in tasks:
                # A job writing its result finishes that (a moment); the others stop
                # following their run and stay claimed for the next start.
                if task.get_name() not in self._finishing:
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.events.event("stopped", in_flight=in_flight or None)
            self.events.close()
            await asyncio.to_thread(self.state.remove)

    def _drained(self) -> bool:
        """Nothing queued, claimed or still being written, and no change seen since the last
        scan."""
        return not (self._queue or self._inflight or self._busy_seen or self._dirty)

    # -- pickup -------------------------------------------------------------------------------
    async def _watch(self) -> None:
        def wanted(change: watchfiles.Change, path: str) -> bool:
            return change != watchfiles.Change.deleted and is_candidate(os.path.basename(path))

        async for _ in watchfiles.awatch(
            self.dirs.pending,
            watch_filter=wanted,
            debounce=100,
            step=WATCH_STEP_MS,
            stop_event=self._stop,
            recursive=False,
            ignore_permission_denied=True,
        ):
            self._dirty = True
            self._wake.set()

    async def _fill(self) -> None:
        """Claim jobs while slots are free: highest priority, then oldest, first."""
        self._busy_seen = False
        if self._dirty:
            self._dirty = False
            entries = await asyncio.to_thread(self._scanner.scan)
            for entry in entries:
                if not entry.regular:
                    await asyncio.to_thread(finish.refuse_entry, self.dirs, entry.name, self.events)
            self._queue = [e.name for e in entries if e.regular and e.name not in self._inflight]
        while self._queue and len(self._inflight) < self.parallel and not self._stop.is_set():
            name = self._queue.pop(0)
            try:
                claimed = await asyncio.to_thread(
                    claim, self.dirs, name, self._max_bytes, use_lease=self._use_lease
                )
            except Busy:
                self._busy_seen = True
                self._dirty = True
                continue
            except Gone:
                continue
            except NotRegular:
                await asyncio.to_thread(finish.refuse_entry, self.dirs, name, self.events)
                continue
            self._start(claimed, recovered=False)

    async def _adopt_orphans(self) -> None:
        """Resume claims in ``.processing/`` no live spool process holds (after a crash)."""
        try:
            names = await asyncio.to_thread(os.listdir, self.dirs.processing)
        except FileNotFoundError:
            return
        for name in sorted(names):
            if name in self._inflight or not is_candidate(name):
                continue
            try:
                claimed = await asyncio.to_thread(adopt, self.dirs, name, self._max_bytes)
            except (Busy, Gone):
                continue
            except NotRegular as exc:
                await asyncio.to_thread(
                    finish.refuse_processing, self.dirs, name, exc.what, self.events
                )
                continue
            self._start(claimed, recovered=True)

    def _start(self, claimed: Claimed, *, recovered: bool) -> None:
        task = asyncio.create_task(self._job(claimed, recovered), name=f"spool:{claimed.name}")
        self._inflight[claimed.name] = task
        self.state.set(claimed.name, None, "claimed")

    # -- one job ------------------------------------------------------------------------------
    async def _job(self, claimed: Claimed, recovered: bool) -> None:
        name = claimed.name
        try:
            try:
                job = parse_job(
                    name,
                    claimed.data,
                    max_bytes=self._max_bytes,
                    default_timeout_s=self.app.settings.spool_timeout_s,
                )
                key = claimed.key(self.dirs, self.principal.tenant)
                request = job.request.model_copy(update={"idempotency_key": key})
                run, created = await self._submit(request)
            except InvalidRequest as exc:
                error = exc if isinstance(exc, InvalidJob) else InvalidSpec(f"{name}: {exc}")
                self.events.event("invalid", name, code=error.code, message=error.message)
                await asyncio.to_thread(finish.write_invalid, self.dirs, claimed, error)
                self.app.metrics.spool_job("invalid")
                return
            self.state.set(name, run.id, run.status.value)
            self.events.event(
                "recovered" if recovered else "picked_up",
                name,
                kind=job.kind,
                priority=job.priority,
                run=run.id,
                submitted="earlier" if recovered and not created else None,
            )
            run = await self._follow(name, run.id)
            self._finishing.add(f"spool:{name}")
            stdout, stderr, full = await self._outputs(run.id, job.result_file is not None)
            await asyncio.to_thread(
                finish.write_result,
                self.dirs,
                job,
                run,
                stdout,
                stderr,
                full,
                self.app.settings.spool_result_output_bytes,
            )
            self.app.metrics.spool_job(run.status.value)
            self.events.event(
                "finished",
                name,
                status=run.status.value,
                duration_s=_duration(run),
                run=run.id,
                failure=run.failure.kind.value if run.failure else None,
            )
        except McpexecError as exc:
            # Not the job's fault (the store is unavailable, ...): the claim stays in
            # .processing/ and is resumed at the next rescan once our lock is released.
            self.events.event("error", name, code=exc.code, message=exc.message)
        finally:
            claimed.release()
            self._finishing.discard(f"spool:{name}")
            self._inflight.pop(name, None)
            self.state.drop(name)
            self._wake.set()

    async def _submit(self, request: RunRequest) -> tuple[Run, bool]:
        """Submit under the file's key. The key names this file (content, inode, mtime), so a
        run already under it IS this job, submitted before a crash, even when a setting that
        shapes the request (``spool_timeout_s``, say) changed since and the App calls the
        replay a conflict: follow that run, never start a second one."""
        try:
            return await self.app.submit(request, self.principal)
        except IdempotencyConflict as exc:
            return await self.app.get(str(exc.details["run_id"]), self.principal), False

    async def _follow(self, name: str, run_id: str) -> Run:
        """The run once terminal, logging each attempt that started on the way."""
        logged = 0
        while True:
            run = await self.app.get(run_id, self.principal)
            if run.attempts > logged:
                logged = run.attempts
                self.events.event("run_started", name, run=run.id, attempt=run.attempts)
                self.state.set(name, run.id, run.status.value)
            if run.terminal:
                return run
            await self.app.events.wait_run(run_id, FOLLOW_POLL_S)

    async def _outputs(self, run_id: str, whole_stdout: bool) -> tuple[bytes, bytes, bytes | None]:
        """The first ``cap + 1`` bytes of each stream (the result shows ``cap``), and the whole
        stdout when the job has a ``result_file``."""
        cap = self.app.settings.spool_result_output_bytes + 1
        stdout = await self._read(run_id, Stream.STDOUT, None if whole_stdout else cap)
        stderr = await self._read(run_id, Stream.STDERR, cap)
        return stdout[:cap], stderr, stdout if whole_stdout else None

    async def _read(self, run_id: str, stream: Stream, limit: int | None) -> bytes:
        chunks: list[bytes] = []
        offset, got = 0, 0
        while limit is None or got < limit:
            want = READ_CHUNK if limit is None else min(READ_CHUNK, limit - got)
            data, offset, _ = await self.app.read_logs(run_id, self.principal, stream, offset, want)
            if not data:
                break
            chunks.append(data)
            got += len(data)
        return b"".join(chunks)

    async def _retention(self) -> None:
        while True:
            removed = await asyncio.to_thread(
                purge_old, self.dirs, self.app.settings.spool_retention_days * 86400.0
            )
            if removed:
                self.events.event("expired", removed=removed)
            await asyncio.sleep(RETENTION_EVERY_S)
