"""``SqliteStore``: the store contract on one SQLite file (the embedded default).

Atomicity: every operation is one transaction on the store's single connection (see
``_sqlite_db``); writes use ``BEGIN IMMEDIATE``, so the write lock is taken before the first read
and no other process can interleave between a check and the write that depends on it (the
fencing checks, the idempotency lookup, the claim's SELECT). Several processes may open the same
file: the claim is one ``UPDATE … WHERE seq IN (SELECT … LIMIT n) RETURNING`` under that lock,
so a run is never handed to two workers. Reads run in a deferred transaction: a consistent
snapshot that never blocks writers (WAL).

Durability: WAL with ``synchronous=NORMAL``: a process crash loses nothing committed, an OS
crash may lose the last transactions, except ``enqueue``, which commits with ``synchronous=FULL``
because its answer (the 202) promises the run is durably stored.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path

from mcpexec.errors import Conflict
from mcpexec.models import (
    Artifact,
    Attempt,
    Page,
    Progress,
    Run,
    RunFilter,
    RunStatus,
    Stream,
)
from mcpexec.store._shared import CANCELLED_MESSAGE, decide_finish, from_us, to_us
from mcpexec.store._sqlite_db import Database, load_queries
from mcpexec.store._sqlite_rows import (
    attempt_of,
    claim_of,
    json_or_none,
    run_of,
    token_of,
    us_or_none,
    worker_of,
)
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

Q = load_queries()
_NO_CURSOR = 2**63 - 1  # "below everything": keeps the seq range in list_runs an index range


def _holds(conn: sqlite3.Connection, run_id: str, attempt: int, worker_id: str) -> bool:
    args = {"run_id": run_id, "attempt": attempt, "worker_id": worker_id}
    return conn.execute(Q["holds"], args).fetchone() is not None


class SqliteStore(Store):
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db = Database(self.path)

    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    # -- runs --------------------------------------------------------------------------------
    async def enqueue(self, new: NewRun) -> tuple[Run, bool]:
        created_at = to_us(new.created_at)
        run_at = us_or_none(new.run_at)
        args = {
            "id": new.id,
            "tenant": new.tenant,
            "priority": new.priority,
            "spec": new.spec.model_dump_json(),
            "retry": new.retry.model_dump_json(),
            "labels": json.dumps(new.labels),
            "idempotency_key": new.idempotency_key,
            "rerun_of": new.rerun_of,
            "created_at": created_at,
            "run_at": run_at,
            "available_at": created_at if run_at is None else run_at,
        }

        def tx(conn: sqlite3.Connection) -> tuple[Run, bool]:
            if new.idempotency_key is not None:
                row = conn.execute(Q["run_by_key"], args).fetchone()
                if row is not None:
                    return run_of(row), False
            try:
                row = conn.execute(Q["insert_run"], args).fetchone()
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"run id {new.id!r} already exists") from exc
            return run_of(row), True

        return await self._db.write(tx, durable=True)

    async def get_run(self, run_id: str, tenant: str | None = None) -> Run | None:
        def tx(conn: sqlite3.Connection) -> Run | None:
            row = conn.execute(Q["run_by_id"], {"run_id": run_id, "tenant": tenant}).fetchone()
            return None if row is None else run_of(row)

        return await self._db.read(tx)

    async def list_runs(self, filter: RunFilter, limit: int, cursor: int | None) -> Page:
        if limit <= 0:
            return Page(runs=[])
        args = {
            "cursor": _NO_CURSOR if cursor is None else cursor,
            "tenant": filter.tenant,
            "statuses": json.dumps(sorted(filter.status)) if filter.status else None,
            "created_after": us_or_none(filter.created_after),
            "created_before": us_or_none(filter.created_before),
            "labels": json.dumps(filter.labels),
            "limit": limit + 1,  # one more tells whether another page follows
        }

        def tx(conn: sqlite3.Connection) -> Page:
            runs = [run_of(r) for r in conn.execute(Q["list_runs"], args)]
            if len(runs) > limit:
                return Page(runs=runs[:limit], next_cursor=str(runs[limit - 1].seq))
            return Page(runs=runs)

        return await self._db.read(tx)

    async def claim(
        self, worker_id: str, limit: int, now: datetime, lease_expires_at: datetime
    ) -> list[Claim]:
        args = {
            "worker_id": worker_id,
            "limit": limit,
            "now": to_us(now),
            "lease_expires_at": to_us(lease_expires_at),
        }

        def tx(conn: sqlite3.Connection) -> list[Claim]:
            rows = conn.execute(Q["claim"], args).fetchall()
            # RETURNING gives no order; restore the claim order for the caller.
            rows.sort(key=lambda r: (-r["priority"], r["seq"]))
            conn.executemany(
                Q["insert_attempt"],
                [
                    {"run_id": r["id"], "number": r["attempts"], "worker_id": worker_id, **args}
                    for r in rows
                ],
            )
            return [claim_of(r) for r in rows]

        if limit <= 0:
            return []
        return await self._db.write(tx)

    async def heartbeat(
        self,
        worker_id: str,
        held: list[tuple[str, int]],
        now: datetime,
        lease_expires_at: datetime,
    ) -> HeartbeatReply:
        lease = to_us(lease_expires_at)

        def tx(conn: sqlite3.Connection) -> HeartbeatReply:
            cancel, lost = set(), set()
            for run_id, attempt in held:
                args = {
                    "run_id": run_id,
                    "attempt": attempt,
                    "worker_id": worker_id,
                    "lease_expires_at": lease,
                }
                row = conn.execute(Q["renew_lease"], args).fetchone()
                if row is None:
                    lost.add(run_id)
                elif row["cancel_requested"]:
                    cancel.add(run_id)
            conn.execute(
                Q["worker_heartbeat"],
                {"worker_id": worker_id, "now": to_us(now), "running": len(held) - len(lost)},
            )
            return HeartbeatReply(cancel=frozenset(cancel), lost=frozenset(lost))

        return await self._db.write(tx)

    async def record_progress(
        self, run_id: str, attempt: int, worker_id: str, progress: Progress
    ) -> bool:
        args = {
            "run_id": run_id,
            "attempt": attempt,
            "worker_id": worker_id,
            "progress": progress.model_dump_json(),
        }
        return await self._db.write(
            lambda conn: conn.execute(Q["record_progress"], args).rowcount == 1
        )

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
        fence = {
            "run_id": run_id,
            "attempt": attempt,
            "worker_id": worker_id,
            "lease_expired_before": us_or_none(lease_expired_before),
        }
        result = json_or_none(outcome.result)  # refuse a non-JSON result before touching anything
        now_us = to_us(now)
        failure = outcome.failure

        def tx(conn: sqlite3.Connection) -> Run | None:
            row = conn.execute(Q["held_run"], fence).fetchone()
            if row is None:
                return None
            decision = decide_finish(
                outcome,
                bool(row["cancel_requested"]),
                retry_at is not None,
                bool(row["has_artifacts"]),
            )
            conn.execute(
                Q["finish_attempt"],
                {
                    "run_id": run_id,
                    "attempt": attempt,
                    "status": decision.attempt_status.value,
                    "now": now_us,
                    "exit_code": outcome.exit_code,
                    "signal": outcome.signal,
                    "failure_kind": None if failure is None else failure.kind.value,
                    "failure_message": None if failure is None else failure.message,
                    "output_truncated": outcome.output_truncated,
                    "isolation": outcome.isolation,
                    "limits": json_or_none(outcome.limits),
                },
            )
            pending = decision.run_status == RunStatus.PENDING
            updated = conn.execute(
                Q["finish_run"],
                {
                    "run_id": run_id,
                    "status": decision.run_status.value,
                    "failure_kind": None
                    if decision.failure is None
                    else decision.failure.kind.value,
                    "failure_message": None
                    if decision.failure is None
                    else decision.failure.message,
                    "partial": decision.partial,
                    "exit_code": outcome.exit_code,
                    "result": result,
                    "output_truncated": outcome.output_truncated,
                    "finished_at": None if pending else now_us,
                    "retry_at": us_or_none(retry_at) if pending else None,
                },
            ).fetchone()
            return run_of(updated)

        return await self._db.write(tx)

    async def expired_leases(self, now: datetime, limit: int = 100) -> list[Claim]:
        args = {"now": to_us(now), "limit": limit}
        return await self._db.read(
            lambda conn: [claim_of(r) for r in conn.execute(Q["expired_leases"], args)]
        )

    async def expire_worker(self, worker_id: str, now: datetime) -> int:
        args = {"worker_id": worker_id, "now": to_us(now)}

        def tx(conn: sqlite3.Connection) -> int:
            count = conn.execute(Q["expire_worker_leases"], args).rowcount
            conn.execute(Q["delete_worker"], args)
            return count

        return await self._db.write(tx)

    async def request_cancel(
        self, run_id: str, now: datetime, tenant: str | None = None
    ) -> Run | None:
        args = {"run_id": run_id, "tenant": tenant, "now": to_us(now), "message": CANCELLED_MESSAGE}

        def tx(conn: sqlite3.Connection) -> Run | None:
            row = conn.execute(Q["run_by_id"], args).fetchone()
            if row is None:
                return None
            if row["status"] == RunStatus.PENDING:
                row = conn.execute(Q["cancel_pending"], args).fetchone()
            elif row["status"] == RunStatus.RUNNING and not row["cancel_requested"]:
                row = conn.execute(Q["cancel_running"], args).fetchone()
            return run_of(row)

        return await self._db.write(tx)

    async def attempts(self, run_id: str) -> list[Attempt]:
        args = {"run_id": run_id}
        return await self._db.read(
            lambda conn: [attempt_of(r) for r in conn.execute(Q["attempts_of_run"], args)]
        )

    # -- logs and artifacts --------------------------------------------------------------------
    async def append_log(
        self, run_id: str, attempt: int, worker_id: str, stream: Stream, data: bytes
    ) -> int | None:
        def tx(conn: sqlite3.Connection) -> int | None:
            if not _holds(conn, run_id, attempt, worker_id):
                return None
            args = {"run_id": run_id, "stream": stream.value, "attempt": attempt, "data": data}
            end = conn.execute(Q["log_end"], args).fetchone()
            offset: int = 0 if end is None else end[0]
            if data:  # an empty chunk would collide with the next one's offset
                conn.execute(Q["insert_log"], {**args, "byte_offset": offset})
            return offset

        return await self._db.write(tx)

    async def read_log(
        self, run_id: str, stream: Stream, offset: int, limit: int
    ) -> tuple[bytes, int]:
        offset, limit = max(offset, 0), max(limit, 0)
        args = {"run_id": run_id, "stream": stream.value, "start": offset, "end": offset + limit}

        def tx(conn: sqlite3.Connection) -> tuple[bytes, int]:
            parts = []
            for row in conn.execute(Q["read_log"], args):
                start = row["byte_offset"]
                parts.append(row["data"][max(offset - start, 0) : offset + limit - start])
            data = b"".join(parts)
            return data, offset + len(data)

        if limit == 0:
            return b"", offset
        return await self._db.read(tx)

    async def add_artifact(self, artifact: Artifact, worker_id: str) -> bool:
        args = {
            "run_id": artifact.run_id,
            "name": artifact.name,
            "attempt": artifact.attempt,
            "size": artifact.size,
            "sha256": artifact.sha256,
            "created_at": to_us(artifact.created_at),
        }

        def tx(conn: sqlite3.Connection) -> bool:
            if not _holds(conn, artifact.run_id, artifact.attempt, worker_id):
                return False
            conn.execute(Q["upsert_artifact"], args)
            return True

        return await self._db.write(tx)

    async def list_artifacts(self, run_id: str) -> list[Artifact]:
        def tx(conn: sqlite3.Connection) -> list[Artifact]:
            return [
                Artifact(
                    run_id=r["run_id"],
                    name=r["name"],
                    size=r["size"],
                    sha256=r["sha256"],
                    attempt=r["attempt"],
                    created_at=from_us(r["created_at"]),
                )
                for r in conn.execute(Q["list_artifacts"], {"run_id": run_id})
            ]

        return await self._db.read(tx)

    # -- workers -------------------------------------------------------------------------------
    async def register_worker(self, info: WorkerInfo) -> None:
        args = {
            "id": info.id,
            "hostname": info.hostname,
            "pid": info.pid,
            "concurrency": info.concurrency,
            "started_at": to_us(info.started_at),
            "heartbeat_at": to_us(info.heartbeat_at),
            "running": info.running,
        }
        await self._db.write(lambda conn: conn.execute(Q["upsert_worker"], args))

    async def remove_worker(self, worker_id: str) -> None:
        await self._db.write(
            lambda conn: conn.execute(Q["delete_worker"], {"worker_id": worker_id})
        )

    async def list_workers(self) -> list[WorkerInfo]:
        return await self._db.read(
            lambda conn: [worker_of(r) for r in conn.execute(Q["list_workers"])]
        )

    # -- housekeeping --------------------------------------------------------------------------
    async def purge_finished(self, before: datetime, limit: int = 500) -> list[str]:
        args = {"before": to_us(before), "limit": limit}
        return await self._db.write(
            lambda conn: [r["id"] for r in conn.execute(Q["purge_finished"], args).fetchall()]
        )

    async def stats(self, tenant: str | None = None) -> Stats:
        def tx(conn: sqlite3.Connection) -> Stats:
            counts = dict.fromkeys((s.value for s in RunStatus), 0)
            for row in conn.execute(Q["stats"], {"tenant": tenant}):
                counts[row["status"]] = row["n"]
            return Stats(by_status=counts)

        return await self._db.read(tx)

    # -- tokens --------------------------------------------------------------------------------
    async def add_token(self, token: TokenRecord) -> None:
        args = {
            "id": token.id,
            "name": token.name,
            "token_hash": token.token_hash,
            "role": token.role,
            "tenant": token.tenant,
            "created_at": to_us(token.created_at),
            "revoked": token.revoked,
        }

        def tx(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(Q["insert_token"], args)
            except sqlite3.IntegrityError as exc:
                raise Conflict("a token with this id or hash already exists") from exc

        await self._db.write(tx)

    async def token_by_hash(self, token_hash: str) -> TokenRecord | None:
        def tx(conn: sqlite3.Connection) -> TokenRecord | None:
            row = conn.execute(Q["token_by_hash"], {"token_hash": token_hash}).fetchone()
            return None if row is None else token_of(row)

        return await self._db.read(tx)

    async def list_tokens(self) -> list[TokenRecord]:
        return await self._db.read(
            lambda conn: [token_of(r) for r in conn.execute(Q["list_tokens"])]
        )
