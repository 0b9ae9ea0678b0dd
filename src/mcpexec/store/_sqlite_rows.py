"""Row ↔ model conversion for the SQLite store: integer-microsecond times, JSON columns."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from mcpexec.models import (
    Attempt,
    ExecSpec,
    Failure,
    FailureKind,
    Progress,
    RetryPolicy,
    Run,
    RunStatus,
)
from mcpexec.store._shared import from_us, to_us
from mcpexec.store.base import Claim, TokenRecord, WorkerInfo


def us_or_none(value: datetime | None) -> int | None:
    return None if value is None else to_us(value)


def dt_or_none(value: int | None) -> datetime | None:
    return None if value is None else from_us(value)


def failure_of(kind: str | None, message: str | None) -> Failure | None:
    return None if kind is None else Failure(kind=FailureKind(kind), message=message or "")


def json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def run_of(row: sqlite3.Row) -> Run:
    return Run(
        id=row["id"],
        seq=row["seq"],
        tenant=row["tenant"],
        status=RunStatus(row["status"]),
        spec=ExecSpec.model_validate_json(row["spec"]),
        retry=RetryPolicy.model_validate_json(row["retry"]),
        priority=row["priority"],
        labels=json.loads(row["labels"]),
        idempotency_key=row["idempotency_key"],
        created_at=from_us(row["created_at"]),
        run_at=dt_or_none(row["run_at"]),
        started_at=dt_or_none(row["started_at"]),
        finished_at=dt_or_none(row["finished_at"]),
        next_attempt_at=dt_or_none(row["next_attempt_at"]),
        attempts=row["attempts"],
        worker_id=row["worker_id"],
        cancel_requested=bool(row["cancel_requested"]),
        exit_code=row["exit_code"],
        failure=failure_of(row["failure_kind"], row["failure_message"]),
        progress=None if row["progress"] is None else Progress.model_validate_json(row["progress"]),
        result=None if row["result"] is None else json.loads(row["result"]),
        partial=bool(row["partial"]),
        output_truncated=bool(row["output_truncated"]),
        rerun_of=row["rerun_of"],
    )


def claim_of(row: sqlite3.Row) -> Claim:
    return Claim(
        run=run_of(row), attempt=row["attempts"], lease_expires_at=from_us(row["lease_expires_at"])
    )


def attempt_of(row: sqlite3.Row) -> Attempt:
    return Attempt(
        run_id=row["run_id"],
        number=row["number"],
        worker_id=row["worker_id"],
        status=RunStatus(row["status"]),
        started_at=from_us(row["started_at"]),
        finished_at=dt_or_none(row["finished_at"]),
        exit_code=row["exit_code"],
        signal=row["signal"],
        failure=failure_of(row["failure_kind"], row["failure_message"]),
        output_truncated=bool(row["output_truncated"]),
        isolation=row["isolation"],
        limits=None if row["limits"] is None else json.loads(row["limits"]),
    )


def worker_of(row: sqlite3.Row) -> WorkerInfo:
    return WorkerInfo(
        id=row["id"],
        hostname=row["hostname"],
        pid=row["pid"],
        concurrency=row["concurrency"],
        started_at=from_us(row["started_at"]),
        heartbeat_at=from_us(row["heartbeat_at"]),
        running=row["running"],
    )


def token_of(row: sqlite3.Row) -> TokenRecord:
    return TokenRecord(
        id=row["id"],
        name=row["name"],
        token_hash=row["token_hash"],
        role=row["role"],
        tenant=row["tenant"],
        created_at=from_us(row["created_at"]),
        revoked=bool(row["revoked"]),
    )
