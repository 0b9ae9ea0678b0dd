"""``PostgresStore``: the store contract on PostgreSQL, for many workers on many machines.

Atomicity: every operation is one READ COMMITTED transaction (``_pg_db``). What SQLite gets from
its single write lock, PostgreSQL gets from locks of the rows and keys involved:

- the claim takes each ready tenant's first runs with ``FOR UPDATE SKIP LOCKED`` (concurrent
  claimers skip each other's rows, never wait, never take one row twice) in priority/FIFO
  order; tenants with a ``max_concurrent`` are first locked with a transaction-scoped advisory
  lock per tenant, so that counting their running attempts and taking their free slots is one
  step across all processes (no over-admission);
- when one tenant without a cap has ready runs, the claim is one statement in autocommit
  (``claim_one_tenant``), so what it locks is held for its COMMIT only;
- fenced writes lock the run row (``FOR UPDATE``) before checking that the worker holds it, so
  a finish, the reaper and a cancel serialise on the run; the finish does it in one statement
  in autocommit, fenced in its ``WHERE`` and optimistic on what its decision read (a cancel
  in between: it reads and decides again);
- the enqueue's tenant queue limit is checked after the insert against the tenant's
  ``run_counts`` row, which the insert's trigger updated and holds locked until COMMIT (exact
  across processes, no COUNT, no lock of its own; ``_pg_tenancy.enqueue_run``); the
  server-wide limit, when set, is counted under an advisory lock; an idempotency key is
  enforced by the unique index (``ON CONFLICT DO NOTHING``: a concurrent twin waits for the
  first and reads it);
- the scheduler's steps are fenced by their cursor and each fire by its primary key, as in SQLite.

Schema and rows: the same tables and columns as the SQLite dialect (integer-microsecond times,
JSON text), so the row decoders of ``_sqlite_rows``/``_sqlite_tasks``/``_sqlite_tenancy`` and
the parameter builders serve both dialects unchanged.

Wake-ups: every write that makes work claimable sends ``NOTIFY mcpexec_work`` in its
transaction; each store LISTENs on its own connection, so a worker in another process (or on
another machine) wakes within milliseconds of the commit (``wakes_across_processes``). Polling
stays the fallback: the listener reconnects after a dropped connection and wakes once then.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, ClassVar

from psycopg.rows import DictRow

from mcpexec.errors import BatchRefused, McpexecError
from mcpexec.models import Artifact, Attempt, Page, Progress, Run, RunFilter, RunStatus, Stream
from mcpexec.store._pg_blobs import PostgresBlobStore
from mcpexec.store._pg_db import Conn, Database, queries
from mcpexec.store._pg_events import PostgresEvents
from mcpexec.store._pg_hooks import PostgresHooks
from mcpexec.store._pg_tenancy import PostgresTenancy, enqueue_run, fetch_all, fetch_one
from mcpexec.store._pg_workflows import PostgresWorkflows
from mcpexec.store._run_list import list_runs_sql, page_of
from mcpexec.store._shared import CANCELLED_MESSAGE, decide_finish, from_us, to_us
from mcpexec.store._sqlite_rows import (
    attempt_of,
    claim_of,
    finish_attempt_args,
    finish_run_args,
    hours_of,
    json_or_none,
    run_of,
    us_or_none,
    worker_args,
    worker_of,
)
from mcpexec.store.base import (
    AttemptOutcome,
    Claim,
    ClaimLimits,
    Enqueued,
    HeartbeatReply,
    HourStats,
    NewRun,
    ReplayCheck,
    RunCursor,
    Stats,
    Store,
    WorkerInfo,
)
from mcpexec.tenancy import Candidate, fair_pick

Q = queries()


async def _append(conn: Conn, run_id: str, attempt: int, stream: Stream, data: bytes) -> int:
    """Append ``data`` to the stream's log (the caller holds the attempt); its offset."""
    args = {"run_id": run_id, "stream": stream.value, "attempt": attempt, "data": data}
    end = await fetch_one(conn, Q["log_end"], args)
    offset: int = 0 if end is None else end["end_offset"]
    if data:
        await conn.execute(Q["insert_log"], {**args, "byte_offset": offset})
        await conn.execute(Q["add_usage"], {"run_id": run_id, "bytes": len(data)})
    return offset


class PostgresStore(PostgresTenancy, PostgresWorkflows, PostgresEvents, PostgresHooks, Store):
    wakes_across_processes: ClassVar[bool] = True

    def __init__(self, url: str) -> None:
        self.url = url
        self._db = Database(url)
        self._q = Q

    def blob_store(self) -> PostgresBlobStore:
        """Artifact bytes in this store's database, on its connection pool (usable once the
        store is open)."""
        return PostgresBlobStore(self._db)

    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    async def wait_for_work(self, timeout: float) -> bool:
        return await self._db.work.wait(timeout)

    def _woken(self) -> None:
        """Wake this store's own waiters (``_wake_others`` told the other stores at COMMIT)."""
        self._db.work.notify()

    # -- runs --------------------------------------------------------------------------------
    async def enqueue(self, new: NewRun) -> tuple[Run, bool]:
        async def submit(conn: Conn, retried: bool) -> tuple[Run, bool]:
            return await enqueue_run(conn, Q, new, self._db.origin, retried)

        run, created = await self._db.statement(submit)
        if created:
            self._woken()
        return run, created

    async def enqueue_many(
        self,
        news: Sequence[NewRun],
        *,
        all_or_nothing: bool = False,
        check_replay: ReplayCheck | None = None,
    ) -> list[Enqueued]:
        async def one(conn: Conn, new: NewRun) -> tuple[Run, bool]:
            # What ``enqueue`` does (mcpexec_enqueue: the queue check after the insert, the
            # audit entry, the NOTIFY), on the batch's connection, inside its transaction.
            return await enqueue_run(conn, Q, new, self._db.origin)

        async def tx(conn: Conn) -> list[Enqueued]:
            results: list[Enqueued] = []
            for new in news:
                try:
                    async with conn.transaction():  # a savepoint: a refused item leaves nothing
                        run, created = await one(conn, new)
                        if not created and check_replay is not None:
                            refused = check_replay(new, run)
                            if refused is not None:
                                raise refused
                    results.append((run, created))
                except McpexecError as exc:
                    results.append(exc)
            failures = [(i, r) for i, r in enumerate(results) if isinstance(r, McpexecError)]
            if all_or_nothing and failures:
                raise BatchRefused(failures)  # the transaction rolls back: nothing is stored
            if any(isinstance(r, tuple) and r[1] for r in results):
                await self._wake_others(conn)
            return results

        if not news:
            return []
        results = await self._db.run(tx, durable=True)
        if any(isinstance(r, tuple) and r[1] for r in results):
            self._woken()
        return results

    async def get_run(self, run_id: str, tenant: str | None = None) -> Run | None:
        args = {"run_id": run_id, "tenant": tenant}

        async def read(conn: Conn) -> Run | None:
            row = await fetch_one(conn, Q["run_by_id"], args)
            return None if row is None else run_of(row)

        return await self._db.read(read)

    async def list_runs(self, filter: RunFilter, limit: int, cursor: RunCursor | None) -> Page:
        if limit <= 0:
            return Page(runs=[])
        sql, args = list_runs_sql("postgres", filter, limit, cursor)

        async def tx(conn: Conn) -> Page:
            return page_of(filter, limit, await fetch_all(conn, sql, args))

        return await self._db.run(tx)

    async def claim(
        self,
        worker_id: str,
        limit: int,
        now: datetime,
        lease_expires_at: datetime,
        limits: ClaimLimits | None = None,
    ) -> list[Claim]:
        if limit <= 0:
            return []
        now_us = to_us(now)
        default = None if limits is None else limits.default_max_concurrent
        have = frozenset() if limits is None else limits.worker_labels
        heads_args: dict[str, Any] = {"now": now_us}
        if have:
            heads_args["have"] = json.dumps(sorted(have))

        claim_args = {
            "worker_id": worker_id,
            "now": now_us,
            "lease_expires_at": to_us(lease_expires_at),
        }

        async def one_tenant(conn: Conn, retried: bool) -> list[Claim] | None:
            # A retry after a lost connection may claim again: runs a lost first try took
            # are held by no live worker and come back when their lease expires (the reaper).
            rows = await fetch_all(
                conn,
                Q["claim_one_tenant_labelled"] if have else Q["claim_one_tenant"],
                {**heads_args, **claim_args, "default_max_concurrent": default, "want": limit},
            )
            if rows and not rows[0]["fast"] and rows[0]["ready_tenants"]:
                return None  # several tenants ready, or a capped one: the transaction below
            return [claim_of(r) for r in rows if r["id"] is not None]

        # One tenant without a max_concurrent ready (the common case): the claim is one
        # statement in autocommit (claim_one_tenant, which finds that out itself), no lock
        # held across a round trip to this process. Otherwise the transaction below.
        fast = await self._db.statement(one_tenant)
        if fast is not None:
            return fast

        async def ready_tenants(conn: Conn) -> list[DictRow]:
            return await fetch_all(
                conn, Q["claim_ready_tenants"], {"default_max_concurrent": default}
            )

        async def tx(conn: Conn) -> list[Claim]:
            ready = await ready_tenants(conn)
            if not ready:
                return []
            caps: dict[str, int | None] = {r["tenant"]: r["max_concurrent"] for r in ready}
            running: dict[str, int] = {r["tenant"]: r["running"] for r in ready}
            capped = [t for t, cap in caps.items() if cap is not None]
            if capped:  # lock, then count again: only now is the count exact
                await conn.execute(Q["lock_tenant_claims"], {"tenants": capped})
                counted = await fetch_all(conn, Q["running_by_tenant"], {"tenants": capped})
                running |= dict.fromkeys(capped, 0) | {r["tenant"]: r["running"] for r in counted}
            wants = {}
            for name, cap in caps.items():
                want = limit if cap is None else min(limit, cap - running[name])
                if want > 0:
                    wants[name] = want
            if not wants:
                return []
            heads = await fetch_all(
                conn,
                Q["claim_heads_labelled"] if have else Q["claim_heads"],
                {**heads_args, "tenants": list(wants), "wants": list(wants.values())},
            )
            candidates = [
                Candidate(key=r["seq"], tenant=r["tenant"], priority=r["priority"], seq=r["seq"])
                for r in heads
            ]
            seqs = fair_pick(candidates, running, caps, limit)
            if not seqs:
                return []
            claimed = await fetch_all(conn, Q["claim"], {**claim_args, "seqs": seqs})
            order = {seq: i for i, seq in enumerate(seqs)}
            claimed.sort(key=lambda r: order[r["seq"]])
            return [claim_of(r) for r in claimed]

        return await self._db.run(tx)

    async def next_available_at(
        self, worker_labels: Collection[str] = frozenset()
    ) -> datetime | None:
        args = {"have": json.dumps(sorted(worker_labels))}

        async def tx(conn: Conn) -> datetime | None:
            row = await fetch_one(conn, Q["next_available_at"], args)
            return None if row is None or row["at"] is None else from_us(row["at"])

        return await self._db.run(tx)

    async def heartbeat(
        self,
        worker_id: str,
        held: list[tuple[str, int]],
        now: datetime,
        lease_expires_at: datetime,
    ) -> HeartbeatReply:
        args = {
            "worker_id": worker_id,
            "run_ids": [run_id for run_id, _ in held],
            "attempts": [attempt for _, attempt in held],
            "lease_expires_at": to_us(lease_expires_at),
        }

        async def tx(conn: Conn) -> HeartbeatReply:
            renewed = await fetch_all(conn, Q["renew_leases"], args)
            kept = {r["id"]: r["cancel_requested"] for r in renewed}
            lost = {run_id for run_id, _ in held if run_id not in kept}
            cancel = {run_id for run_id, requested in kept.items() if requested}
            await conn.execute(
                Q["worker_heartbeat"],
                {"worker_id": worker_id, "now": to_us(now), "running": len(held) - len(lost)},
            )
            return HeartbeatReply(cancel=frozenset(cancel), lost=frozenset(lost))

        return await self._db.run(tx)

    async def record_progress(
        self, run_id: str, attempt: int, worker_id: str, progress: Progress
    ) -> bool:
        args = {
            "run_id": run_id,
            "attempt": attempt,
            "worker_id": worker_id,
            "progress": progress.model_dump_json(),
        }

        async def tx(conn: Conn) -> bool:
            return (await conn.execute(Q["record_progress"], args)).rowcount == 1

        return await self._db.run(tx)

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
        tail: dict[str, bytes] = {}  # the log tail, one chunk per stream, in its order
        for stream, data in outcome.log_tail:
            tail[stream.value] = tail.get(stream.value, b"") + data

        async def finish(conn: Conn, retried: bool) -> tuple[bool, Run | None]:
            """``(True, the run finished)``, ``(True, None)`` if not held, ``(False, None)`` if
            what the decision was made on changed (decide again)."""
            if outcome.succeeded and not retried:
                # Completed whatever cancel_requested and the artifacts say: no read first.
                return True, await write(conn, None, None)
            seen = await fetch_one(conn, Q["held_run_unlocked"], fence)
            if seen is None:
                if not retried:
                    return True, None
                # A lost connection: the first try may have committed this very finish. It
                # did if the attempt was finished at this finish's own time: the reaper (or a
                # cancel) finishing it meanwhile leaves the same run, attempt and worker.
                row = await fetch_one(conn, Q["run_by_id"], {"run_id": run_id, "tenant": None})
                if row is None or row["attempts"] != attempt or row["worker_id"] != worker_id:
                    return True, None
                if row["status"] == RunStatus.RUNNING:
                    return True, None
                mine = await fetch_one(
                    conn, Q["attempt_finished_at"], {"run_id": run_id, "attempt": attempt}
                )
                ours = mine is not None and mine["finished_at"] == now_us
                return True, (run_of(row) if ours else None)
            finished = await write(conn, bool(seen["cancel_requested"]), seen["has_artifacts"])
            return finished is not None, finished

        async def write(conn: Conn, cancel: bool | None, artifacts: bool | None) -> Run | None:
            """The fenced finish decided on ``cancel``/``artifacts`` (``None``: not read, the
            run succeeded); ``None`` if it wrote nothing."""
            decision = decide_finish(outcome, bool(cancel), retry_at is not None, bool(artifacts))
            attempt_args = finish_attempt_args(run_id, attempt, outcome, decision, now_us)
            args = {
                **fence,
                **finish_run_args(run_id, outcome, decision, result, now_us, retry_at),
                **{f"a_{k}": v for k, v in attempt_args.items()},
                "seen_cancel": cancel,
                "seen_artifacts": None if artifacts is None else bool(artifacts),
                "origin": self._db.origin,
                "tail_streams": list(tail),
                "tail_data": list(tail.values()),
            }
            row = await fetch_one(conn, Q["finish"], args)
            return None if row is None else run_of(row)

        # Read, decide, then one fenced statement in autocommit that writes only if what was
        # read is unchanged (with the log tail, appended in the same statement): no lock is
        # held across a round trip to this process. A cancel requested in between makes the
        # write miss; the loop reads and decides again. A run that succeeded skips the read.
        while True:
            done, finished = await self._db.statement(finish)
            if done:
                break
        if finished is not None and finished.status == RunStatus.PENDING:
            self._woken()
        return finished

    async def expired_leases(self, now: datetime, limit: int = 100) -> list[Claim]:
        args = {"now": to_us(now), "limit": limit}

        async def tx(conn: Conn) -> list[Claim]:
            return [claim_of(r) for r in await fetch_all(conn, Q["expired_leases"], args)]

        return await self._db.run(tx)

    async def expire_worker(self, worker_id: str, now: datetime) -> int:
        args = {"worker_id": worker_id, "now": to_us(now)}

        async def tx(conn: Conn) -> int:
            count = (await conn.execute(Q["expire_worker_leases"], args)).rowcount
            await conn.execute(Q["delete_worker"], args)
            return count

        return await self._db.run(tx)

    async def request_cancel(
        self, run_id: str, now: datetime, tenant: str | None = None
    ) -> Run | None:
        args = {"run_id": run_id, "tenant": tenant, "now": to_us(now), "message": CANCELLED_MESSAGE}

        async def tx(conn: Conn) -> Run | None:
            row = await fetch_one(conn, Q["run_by_id_for_update"], args)
            if row is None:
                return None
            if row["status"] == RunStatus.PENDING:
                row = await fetch_one(conn, Q["cancel_pending"], args)
            elif row["status"] == RunStatus.RUNNING and not row["cancel_requested"]:
                row = await fetch_one(conn, Q["cancel_running"], args)
            assert row is not None
            return run_of(row)

        return await self._db.run(tx)

    async def attempts(self, run_id: str) -> list[Attempt]:
        async def tx(conn: Conn) -> list[Attempt]:
            found = await fetch_all(conn, Q["attempts_of_run"], {"run_id": run_id})
            return [attempt_of(r) for r in found]

        return await self._db.run(tx)

    # -- logs and artifacts --------------------------------------------------------------------
    async def _holds(self, conn: Conn, run_id: str, attempt: int, worker_id: str) -> bool:
        args = {"run_id": run_id, "attempt": attempt, "worker_id": worker_id}
        return await fetch_one(conn, Q["holds"], args) is not None

    async def append_log(
        self, run_id: str, attempt: int, worker_id: str, stream: Stream, data: bytes
    ) -> int | None:
        async def tx(conn: Conn) -> int | None:
            if not await self._holds(conn, run_id, attempt, worker_id):
                return None
            return await _append(conn, run_id, attempt, stream, data)

        return await self._db.run(tx)

    async def read_log(
        self, run_id: str, stream: Stream, offset: int, limit: int
    ) -> tuple[bytes, int]:
        offset, limit = max(offset, 0), max(limit, 0)
        if limit == 0:
            return b"", offset
        args = {"run_id": run_id, "stream": stream.value, "start": offset, "end": offset + limit}

        async def tx(conn: Conn) -> tuple[bytes, int]:
            parts = []
            for row in await fetch_all(conn, Q["read_log"], args):
                start = row["byte_offset"]
                parts.append(bytes(row["data"][max(offset - start, 0) : offset + limit - start]))
            data = b"".join(parts)
            return data, offset + len(data)

        return await self._db.run(tx)

    async def add_artifact(self, artifact: Artifact, worker_id: str) -> bool:
        args = {
            "run_id": artifact.run_id,
            "name": artifact.name,
            "attempt": artifact.attempt,
            "size": artifact.size,
            "sha256": artifact.sha256,
            "created_at": to_us(artifact.created_at),
        }

        async def tx(conn: Conn) -> bool:
            if not await self._holds(conn, artifact.run_id, artifact.attempt, worker_id):
                return False
            replaced = await fetch_one(conn, Q["artifact_size"], args)
            await conn.execute(Q["upsert_artifact"], args)
            grown = artifact.size - (0 if replaced is None else replaced["size"])
            await conn.execute(Q["add_usage"], {"run_id": artifact.run_id, "bytes": grown})
            return True

        return await self._db.run(tx)

    async def list_artifacts(self, run_id: str) -> list[Artifact]:
        async def tx(conn: Conn) -> list[Artifact]:
            return [
                Artifact(
                    run_id=r["run_id"],
                    name=r["name"],
                    size=r["size"],
                    sha256=r["sha256"],
                    attempt=r["attempt"],
                    created_at=from_us(r["created_at"]),
                )
                for r in await fetch_all(conn, Q["list_artifacts"], {"run_id": run_id})
            ]

        return await self._db.run(tx)

    # -- workers -------------------------------------------------------------------------------
    async def register_worker(self, info: WorkerInfo) -> None:
        args = worker_args(info)
        await self._execute(Q["upsert_worker"], args)

    async def remove_worker(self, worker_id: str) -> None:
        await self._execute(Q["delete_worker"], {"worker_id": worker_id})

    async def list_workers(self) -> list[WorkerInfo]:
        async def tx(conn: Conn) -> list[WorkerInfo]:
            return [worker_of(r) for r in await fetch_all(conn, Q["list_workers"], {})]

        return await self._db.run(tx)

    # -- housekeeping --------------------------------------------------------------------------
    async def purge_finished(self, before: datetime, limit: int = 500) -> list[str]:
        args: dict[str, Any] = {"before": to_us(before), "limit": limit}

        async def tx(conn: Conn) -> list[str]:
            ids = [r["id"] for r in await fetch_all(conn, Q["purgeable"], args)]
            if not ids:
                return []
            freed = await fetch_all(conn, Q["purged_bytes"], {"run_ids": ids})
            await conn.execute(Q["delete_runs"], {"run_ids": ids})
            for row in freed:
                await conn.execute(Q["subtract_usage"], row)
            return ids

        return await self._db.run(tx)

    async def storage_used(self, tenant: str | None = None) -> int:
        async def tx(conn: Conn) -> int:
            row = await fetch_one(conn, Q["storage_used"], {"tenant": tenant})
            return 0 if row is None else int(row["used"])

        return await self._db.run(tx)

    async def stats(self, tenant: str | None = None) -> Stats:
        async def tx(conn: Conn) -> Stats:
            counts = dict.fromkeys((s.value for s in RunStatus), 0)
            for row in await fetch_all(conn, Q["stats"], {"tenant": tenant}):
                counts[row["status"]] = row["n"]
            return Stats(by_status=counts)

        return await self._db.run(tx)

    async def run_history(self, since: datetime, tenant: str | None = None) -> list[HourStats]:
        args = {"since": to_us(since), "tenant": tenant}

        async def tx(conn: Conn) -> list[HourStats]:
            return hours_of(await fetch_all(conn, Q["run_history"], args))

        return await self._db.run(tx)

    async def prune_history(self, before: datetime, limit: int = 5000) -> int:
        args = {"before": to_us(before), "limit": limit}

        async def tx(conn: Conn) -> int:
            cur = await conn.execute(Q["prune_history"], args)
            return cur.rowcount

        return await self._db.run(tx)
