"""``MemoryStore``: the store contract on plain dicts, for unit tests.

Atomicity: every method body runs without an ``await``, so on one event loop each operation is
atomic and isolated from every other, exactly like one short transaction. Nothing is durable and
nothing is shared between processes. Values cross the boundary as copies (results through JSON,
as the SQLite store does) so that a caller cannot mutate stored state by accident.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mcpexec.errors import Conflict
from mcpexec.models import (
    Artifact,
    Attempt,
    ExecSpec,
    Failure,
    FailureKind,
    Page,
    Progress,
    RetryPolicy,
    Run,
    RunFilter,
    RunStatus,
    Stream,
)
from mcpexec.store._shared import CANCELLED_MESSAGE, decide_finish, utc
from mcpexec.store.base import (
    AttemptOutcome,
    Claim,
    HeartbeatReply,
    NewRun,
    Stats,
    Store,
    TokenRecord,
    WorkerInfo,
)


@dataclass
class _Row:
    """A run as stored: the public fields plus the queue's private ones."""

    id: str
    seq: int
    tenant: str
    status: RunStatus
    spec: ExecSpec
    retry: RetryPolicy
    priority: int
    labels: dict[str, str]
    created_at: datetime
    available_at: datetime
    idempotency_key: str | None = None
    run_at: datetime | None = None
    rerun_of: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    next_attempt_at: datetime | None = None
    attempts: int = 0
    worker_id: str | None = None
    lease_expires_at: datetime | None = None
    cancel_requested: bool = False
    exit_code: int | None = None
    failure: Failure | None = None
    progress: Progress | None = None
    result: Any = None
    partial: bool = False
    output_truncated: bool = False

    def holds(self, attempt: int, worker_id: str) -> bool:
        return (
            self.status == RunStatus.RUNNING
            and self.attempts == attempt
            and self.worker_id == worker_id
        )

    def run(self) -> Run:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del data["available_at"], data["lease_expires_at"]
        data["labels"] = dict(self.labels)
        data["result"] = _copy_json(self.result)
        return Run(**data)


def _copy_json(value: Any) -> Any:
    # Through JSON, as the SQLite store does: same copies, same refusal of non-JSON results.
    return None if value is None else json.loads(json.dumps(value))


class MemoryStore(Store):
    def __init__(self) -> None:
        self._runs: dict[str, _Row] = {}
        self._by_key: dict[tuple[str, str], str] = {}
        self._attempts: dict[str, list[Attempt]] = {}
        self._logs: dict[tuple[str, Stream], bytearray] = {}
        self._artifacts: dict[str, dict[str, Artifact]] = {}
        self._workers: dict[str, WorkerInfo] = {}
        self._tokens: dict[str, TokenRecord] = {}
        self._seq = 0

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    # -- runs --------------------------------------------------------------------------------
    async def enqueue(self, new: NewRun) -> tuple[Run, bool]:
        if new.idempotency_key is not None:
            existing = self._by_key.get((new.tenant, new.idempotency_key))
            if existing is not None:
                return self._runs[existing].run(), False
        if new.id in self._runs:
            raise Conflict(f"run id {new.id!r} already exists")
        self._seq += 1
        run_at = utc(new.run_at) if new.run_at is not None else None
        created_at = utc(new.created_at)
        row = _Row(
            id=new.id,
            seq=self._seq,
            tenant=new.tenant,
            status=RunStatus.PENDING,
            spec=new.spec,
            retry=new.retry,
            priority=new.priority,
            labels=dict(new.labels),
            created_at=created_at,
            available_at=run_at or created_at,
            idempotency_key=new.idempotency_key,
            run_at=run_at,
            rerun_of=new.rerun_of,
        )
        self._runs[new.id] = row
        if new.idempotency_key is not None:
            self._by_key[(new.tenant, new.idempotency_key)] = new.id
        return row.run(), True

    async def get_run(self, run_id: str, tenant: str | None = None) -> Run | None:
        row = self._runs.get(run_id)
        if row is None or (tenant is not None and row.tenant != tenant):
            return None
        return row.run()

    async def list_runs(self, filter: RunFilter, limit: int, cursor: int | None) -> Page:
        after = utc(filter.created_after) if filter.created_after else None
        before = utc(filter.created_before) if filter.created_before else None
        found: list[Run] = []
        if limit <= 0:
            return Page(runs=found)
        for row in sorted(self._runs.values(), key=lambda r: r.seq, reverse=True):
            if cursor is not None and row.seq >= cursor:
                continue
            if filter.tenant is not None and row.tenant != filter.tenant:
                continue
            if filter.status and row.status not in filter.status:
                continue
            if any(row.labels.get(k) != v for k, v in filter.labels.items()):
                continue
            if (after and row.created_at < after) or (before and row.created_at >= before):
                continue
            if len(found) == limit:
                return Page(runs=found, next_cursor=str(found[-1].seq))
            found.append(row.run())
        return Page(runs=found, next_cursor=None)

    async def claim(
        self, worker_id: str, limit: int, now: datetime, lease_expires_at: datetime
    ) -> list[Claim]:
        now, lease = utc(now), utc(lease_expires_at)
        ready = [
            r
            for r in self._runs.values()
            if r.status == RunStatus.PENDING and r.available_at <= now and not r.cancel_requested
        ]
        ready.sort(key=lambda r: (-r.priority, r.seq))
        claims = []
        for row in ready[: max(limit, 0)]:
            row.status = RunStatus.RUNNING
            row.attempts += 1
            row.worker_id = worker_id
            row.lease_expires_at = lease
            row.next_attempt_at = None
            row.started_at = row.started_at or now
            self._attempts.setdefault(row.id, []).append(
                Attempt(
                    run_id=row.id,
                    number=row.attempts,
                    worker_id=worker_id,
                    status=RunStatus.RUNNING,
                    started_at=now,
                )
            )
            claims.append(Claim(run=row.run(), attempt=row.attempts, lease_expires_at=lease))
        return claims

    async def heartbeat(
        self,
        worker_id: str,
        held: list[tuple[str, int]],
        now: datetime,
        lease_expires_at: datetime,
    ) -> HeartbeatReply:
        cancel, lost = set(), set()
        for run_id, attempt in held:
            row = self._runs.get(run_id)
            if row is None or not row.holds(attempt, worker_id):
                lost.add(run_id)
                continue
            row.lease_expires_at = utc(lease_expires_at)
            if row.cancel_requested:
                cancel.add(run_id)
        worker = self._workers.get(worker_id)
        if worker is not None:
            self._workers[worker_id] = dataclasses.replace(
                worker, heartbeat_at=utc(now), running=len(held) - len(lost)
            )
        return HeartbeatReply(cancel=frozenset(cancel), lost=frozenset(lost))

    async def record_progress(
        self, run_id: str, attempt: int, worker_id: str, progress: Progress
    ) -> bool:
        row = self._held(run_id, attempt, worker_id)
        if row is None:
            return False
        row.progress = progress
        return True

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
        row = self._held(run_id, attempt, worker_id)
        if row is None:
            return None
        if lease_expired_before is not None:
            assert row.lease_expires_at is not None
            if row.lease_expires_at > utc(lease_expired_before):
                return None
        result = _copy_json(outcome.result)  # refuse non-JSON before changing anything
        now = utc(now)
        decision = decide_finish(
            outcome, row.cancel_requested, retry_at is not None, bool(self._artifacts.get(run_id))
        )
        attempts = self._attempts[run_id]
        attempts[-1] = attempts[-1].model_copy(
            update={
                "status": decision.attempt_status,
                "finished_at": now,
                "exit_code": outcome.exit_code,
                "signal": outcome.signal,
                "failure": outcome.failure,
                "output_truncated": outcome.output_truncated,
                "isolation": outcome.isolation,
                "limits": _copy_json(outcome.limits),
            }
        )
        row.status = decision.run_status
        row.failure = decision.failure
        row.partial = decision.partial
        row.exit_code = outcome.exit_code
        row.result = result
        row.output_truncated = row.output_truncated or outcome.output_truncated
        row.lease_expires_at = None
        if decision.run_status == RunStatus.PENDING:
            assert retry_at is not None
            row.next_attempt_at = row.available_at = utc(retry_at)
        else:
            row.finished_at = now
        return row.run()

    async def expired_leases(self, now: datetime, limit: int = 100) -> list[Claim]:
        now = utc(now)
        rows = [
            r
            for r in self._runs.values()
            if r.status == RunStatus.RUNNING
            and r.lease_expires_at is not None
            and r.lease_expires_at <= now
        ]
        rows.sort(key=lambda r: (r.lease_expires_at, r.seq))
        return [
            Claim(run=r.run(), attempt=r.attempts, lease_expires_at=r.lease_expires_at)
            for r in rows[:limit]
            if r.lease_expires_at is not None
        ]

    async def expire_worker(self, worker_id: str, now: datetime) -> int:
        count = 0
        for row in self._runs.values():
            if row.status == RunStatus.RUNNING and row.worker_id == worker_id:
                # an earlier end is kept, like the SQL MIN()
                lease = row.lease_expires_at
                row.lease_expires_at = utc(now) if lease is None else min(lease, utc(now))
                count += 1
        self._workers.pop(worker_id, None)
        return count

    async def request_cancel(
        self, run_id: str, now: datetime, tenant: str | None = None
    ) -> Run | None:
        row = self._runs.get(run_id)
        if row is None or (tenant is not None and row.tenant != tenant):
            return None
        if row.status == RunStatus.PENDING:
            row.status = RunStatus.CANCELLED
            row.cancel_requested = True
            row.failure = Failure(kind=FailureKind.CANCELLED, message=CANCELLED_MESSAGE)
            row.finished_at = utc(now)
            row.next_attempt_at = None
            row.partial = bool(self._artifacts.get(run_id))
        elif row.status == RunStatus.RUNNING:
            row.cancel_requested = True
        return row.run()

    async def attempts(self, run_id: str) -> list[Attempt]:
        return list(self._attempts.get(run_id, []))

    def _held(self, run_id: str, attempt: int, worker_id: str) -> _Row | None:
        row = self._runs.get(run_id)
        return row if row is not None and row.holds(attempt, worker_id) else None

    # -- logs and artifacts --------------------------------------------------------------------
    async def append_log(
        self, run_id: str, attempt: int, worker_id: str, stream: Stream, data: bytes
    ) -> int | None:
        if self._held(run_id, attempt, worker_id) is None:
            return None
        log = self._logs.setdefault((run_id, stream), bytearray())
        offset = len(log)
        log += data
        return offset

    async def read_log(
        self, run_id: str, stream: Stream, offset: int, limit: int
    ) -> tuple[bytes, int]:
        log = self._logs.get((run_id, stream), bytearray())
        offset = max(offset, 0)
        data = bytes(log[offset : offset + max(limit, 0)])
        return data, offset + len(data)

    async def add_artifact(self, artifact: Artifact, worker_id: str) -> bool:
        if self._held(artifact.run_id, artifact.attempt, worker_id) is None:
            return False
        stored = artifact.model_copy(update={"created_at": utc(artifact.created_at)})
        self._artifacts.setdefault(artifact.run_id, {})[artifact.name] = stored
        return True

    async def list_artifacts(self, run_id: str) -> list[Artifact]:
        return sorted(self._artifacts.get(run_id, {}).values(), key=lambda a: a.name)

    # -- workers -------------------------------------------------------------------------------
    async def register_worker(self, info: WorkerInfo) -> None:
        self._workers[info.id] = dataclasses.replace(
            info, started_at=utc(info.started_at), heartbeat_at=utc(info.heartbeat_at)
        )

    async def remove_worker(self, worker_id: str) -> None:
        self._workers.pop(worker_id, None)

    async def list_workers(self) -> list[WorkerInfo]:
        return [self._workers[k] for k in sorted(self._workers)]

    # -- housekeeping --------------------------------------------------------------------------
    async def purge_finished(self, before: datetime, limit: int = 500) -> list[str]:
        before = utc(before)
        done = [
            r
            for r in self._runs.values()
            if r.status.terminal and r.finished_at is not None and r.finished_at < before
        ]
        done.sort(key=lambda r: (r.finished_at, r.seq))
        ids = [r.id for r in done[:limit]]
        for run_id in ids:
            row = self._runs.pop(run_id)
            if row.idempotency_key is not None:
                self._by_key.pop((row.tenant, row.idempotency_key), None)
            self._attempts.pop(run_id, None)
            self._artifacts.pop(run_id, None)
            for stream in Stream:
                self._logs.pop((run_id, stream), None)
        return ids

    async def stats(self, tenant: str | None = None) -> Stats:
        counts = dict.fromkeys((s.value for s in RunStatus), 0)
        for row in self._runs.values():
            if tenant is None or row.tenant == tenant:
                counts[row.status.value] += 1
        return Stats(by_status=counts)

    # -- tokens --------------------------------------------------------------------------------
    async def add_token(self, token: TokenRecord) -> None:
        if token.id in self._tokens or any(
            t.token_hash == token.token_hash for t in self._tokens.values()
        ):
            raise Conflict("a token with this id or hash already exists")
        self._tokens[token.id] = dataclasses.replace(token, created_at=utc(token.created_at))

    async def token_by_hash(self, token_hash: str) -> TokenRecord | None:
        return next((t for t in self._tokens.values() if t.token_hash == token_hash), None)

    async def list_tokens(self) -> list[TokenRecord]:
        return sorted(self._tokens.values(), key=lambda t: (t.created_at, t.id))
