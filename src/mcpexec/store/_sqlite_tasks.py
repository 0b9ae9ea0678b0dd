"""The SQLite store's tasks and schedules (issue 11): row decoding and the transaction bodies.

Each function runs on the store's database thread inside the transaction ``SqliteStore`` opened
(``BEGIN IMMEDIATE`` for writes), so a read and the write that depends on it cannot interleave
with another process: the define's "latest version" read, the scheduler's cursor check.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from typing import Any

from mcpexec.errors import Conflict
from mcpexec.models import Run
from mcpexec.schedules import ScheduleSpec
from mcpexec.store._shared import Row, from_us, to_us
from mcpexec.store._sqlite_rows import dt_or_none, json_or_none, run_of, us_or_none
from mcpexec.store.base import (
    SKIPPED_OUTCOMES,
    FireBatch,
    FireRecord,
    NewRun,
    ScheduleChange,
    ScheduleRecord,
    TaskRecord,
)
from mcpexec.tasks import TaskDefinition, canonical_content, content_hash, next_version


def run_args(new: NewRun) -> dict[str, Any]:
    """The parameters of ``insert_run`` for ``new``."""
    created_at = to_us(new.created_at)
    run_at = us_or_none(new.run_at)
    return {
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
        "task": new.task,
        "task_version": new.task_version,
        "params": json_or_none(new.params),
        "estimated_duration_ms": new.estimated_duration_ms,
        "owner": new.owner,
        "worker_labels": json.dumps(sorted(set(new.worker_labels))),
        "tool": None if new.spec.tool is None else new.spec.tool.qualified,
        "notify": None if new.notify is None else new.notify.model_dump_json(),
    }


def task_of(row: Row) -> TaskRecord:
    return TaskRecord(
        tenant=row["tenant"],
        name=row["name"],
        version=row["version"],
        owner=row["owner"],
        content_hash=row["content_hash"],
        definition=TaskDefinition.model_validate_json(row["definition"]),
        created_at=from_us(row["created_at"]),
        archived=bool(row["archived"]),
    )


def schedule_of(row: Row) -> ScheduleRecord:
    return ScheduleRecord(
        id=row["id"],
        tenant=row["tenant"],
        owner=row["owner"],
        task=row["task"],
        task_version=row["task_version"],
        params=json.loads(row["params"]),
        spec=ScheduleSpec.model_validate_json(row["spec"]),
        created_at=from_us(row["created_at"]),
        handled_until=from_us(row["handled_until"]),
        next_fire_at=dt_or_none(row["next_fire_at"]),
        last_fire_at=dt_or_none(row["last_fire_at"]),
        last_run_id=row["last_run_id"],
        last_outcome=row["last_outcome"],
        missed_count=row["missed_count"],
        skipped_count=row["skipped_count"],
        buffered_fire=row["buffered_fire"],
    )


def fire_of(row: Row) -> FireRecord:
    return FireRecord(
        schedule_id=row["schedule_id"],
        fire_key=row["fire_key"],
        fire_at=from_us(row["fire_at"]),
        outcome=row["outcome"],
        run_id=row["run_id"],
        created_at=from_us(row["created_at"]),
        message=row["message"],
    )


def schedule_args(schedule: ScheduleRecord) -> dict[str, Any]:
    return {
        "id": schedule.id,
        "tenant": schedule.tenant,
        "owner": schedule.owner,
        "task": schedule.task,
        "task_version": schedule.task_version,
        "params": json.dumps(schedule.params),
        "spec": schedule.spec.model_dump_json(),
        "created_at": to_us(schedule.created_at),
        "handled_until": to_us(schedule.handled_until),
        "next_fire_at": us_or_none(schedule.next_fire_at),
    }


def schedule_change_args(schedule_id: str, change: ScheduleChange) -> dict[str, Any]:
    """The parameters of ``update_schedule``."""
    return {
        "id": schedule_id,
        "spec": change.spec.model_dump_json(),
        "task_version": change.task_version,
        "params": json.dumps(change.params),
        "next_fire_at": us_or_none(change.next_fire_at),
        "handled_until": to_us(change.handled_until),
        "updated_at": to_us(change.updated_at),
    }


def define_task(
    conn: sqlite3.Connection, q: dict[str, str], args: dict[str, Any], task: TaskDefinition
) -> tuple[TaskRecord, bool]:
    latest = conn.execute(q["latest_task"], args).fetchone()
    version, created = next_version(
        None if latest is None else (latest["version"], latest["content_hash"]), task
    )
    conn.execute(q["unarchive_task"], args)
    if not created:
        return dataclasses.replace(task_of(latest), archived=False), False
    definition = json.dumps({"name": task.name, **canonical_content(task)}, sort_keys=True)
    row = conn.execute(
        q["insert_task"],
        {**args, "version": version, "content_hash": content_hash(task), "definition": definition},
    ).fetchone()
    return task_of(row), True


def record_fires(conn: sqlite3.Connection, q: dict[str, str], batch: FireBatch) -> list[Run] | None:
    sid = batch.schedule_id
    if batch.manual:
        if conn.execute(q["schedule_exists"], {"id": sid}).fetchone() is None:
            return None
    else:
        moved = conn.execute(
            q["advance_schedule"],
            {
                "id": sid,
                "expected": to_us(batch.expected_handled_until),
                "handled_until": to_us(batch.handled_until),
                "next_fire_at": us_or_none(batch.next_fire_at),
                "missed": batch.missed,
            },
        ).rowcount
        if moved != 1:
            return None  # another process handled this step (or the schedule is gone)
    runs: list[Run] = []
    for fire in batch.fires:
        inserted = conn.execute(
            q["insert_fire"],
            {
                "schedule_id": sid,
                "fire_key": fire.fire_key,
                "fire_at": to_us(fire.fire_at),
                "outcome": fire.outcome,
                "run_id": None if fire.run is None else fire.run.id,
                "message": fire.message,
                "created_at": to_us(batch.now),
            },
        ).rowcount
        if inserted != 1:
            continue  # this fire happened already: its run exists
        if fire.run is not None:
            try:
                runs.append(run_of(conn.execute(q["insert_run"], run_args(fire.run)).fetchone()))
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"run id {fire.run.id!r} already exists") from exc
        conn.execute(
            q["note_fire"],
            {
                "schedule_id": sid,
                "fire_key": fire.fire_key,
                "fire_at": to_us(fire.fire_at),
                "outcome": fire.outcome,
                "run_id": None if fire.run is None else fire.run.id,
                "skipped": int(fire.outcome in SKIPPED_OUTCOMES),
                "buffer": fire.outcome == "buffered",
            },
        )
    return runs


def start_buffered(
    conn: sqlite3.Connection, q: dict[str, str], schedule_id: str, fire_key: str, new: NewRun
) -> Run | None:
    args = {"schedule_id": schedule_id, "fire_key": fire_key, "run_id": new.id}
    if conn.execute(q["take_buffered"], args).rowcount != 1:
        return None
    conn.execute(q["start_buffered_fire"], args)
    return run_of(conn.execute(q["insert_run"], run_args(new)).fetchone())
