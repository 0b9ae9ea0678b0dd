"""Row → model conversion for the SQLite store: integer-microsecond times, JSON columns.

A run is decoded from the ``Run`` model's own fields (``RUN_FIELDS``), not from a copy of them."""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from mcpexec.models import Attempt, Failure, FailureKind, Run, RunStatus
from mcpexec.store._shared import FinishDecision, Row, from_us, to_us
from mcpexec.store.base import AttemptOutcome, Claim, HourStats, WorkerInfo


def us_or_none(value: datetime | None) -> int | None:
    return None if value is None else to_us(value)


def dt_or_none(value: int | None) -> datetime | None:
    return None if value is None else from_us(value)


def failure_of(kind: str | None, message: str | None) -> Failure | None:
    return None if kind is None else Failure(kind=FailureKind(kind), message=message or "")


def json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _alternatives(annotation: Any) -> set[Any]:
    """``X | None`` → {X}; anything else → {annotation}."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return {a for a in typing.get_args(annotation) if a is not type(None)}
    return {annotation}


def _column_kind(annotation: Any) -> str:
    """How a model field is stored: ``time`` (integer µs), ``model`` (pydantic JSON), ``json``
    (JSON text) or ``plain`` (the value as SQLite gives it; pydantic converts 0/1 and enums)."""
    kinds = _alternatives(annotation)
    if datetime in kinds:
        return "time"
    if any(isinstance(a, type) and issubclass(a, BaseModel) for a in kinds):
        return "model"
    if any(a is Any or typing.get_origin(a) in (dict, list) or a in (dict, list) for a in kinds):
        return "json"
    return "plain"


def _model_of(annotation: Any) -> type[BaseModel]:
    kinds = _alternatives(annotation)
    return next(a for a in kinds if isinstance(a, type) and issubclass(a, BaseModel))


#: ``Failure`` is stored as two columns (``failure_kind``, ``failure_message``) wherever it
#: appears, so that it can be filtered and indexed.
_COMPOSITE = {"failure"}

#: The columns of ``runs`` a ``Run`` is read from, derived from the model: a new ``Run`` field
#: needs a migration adding the column and the statements that write it, nothing here.
RUN_FIELDS: dict[str, str] = {
    name: _column_kind(info.annotation)
    for name, info in Run.model_fields.items()
    if name not in _COMPOSITE
}
RUN_COLUMNS = (*RUN_FIELDS, "failure_kind", "failure_message")


def _decoder(kind: str, annotation: Any) -> Callable[[Any], Any] | None:
    """How a non-NULL column value becomes the field's value (``None``: as SQLite gives it)."""
    if kind == "time":
        return from_us
    if kind == "model":
        return _model_of(annotation).model_validate_json
    if kind == "json":
        return json.loads
    return None


#: Each run column's decoder, worked out once (a run is decoded on every claim and read).
_RUN_DECODERS = {
    name: _decoder(kind, Run.model_fields[name].annotation) for name, kind in RUN_FIELDS.items()
}


def run_of(row: Row) -> Run:
    data: dict[str, Any] = {}
    for name, decode in _RUN_DECODERS.items():
        value = row[name]
        data[name] = value if decode is None or value is None else decode(value)
    data["failure"] = failure_of(row["failure_kind"], row["failure_message"])
    return Run.model_validate(data)


def claim_of(row: Row) -> Claim:
    return Claim(
        run=run_of(row), attempt=row["attempts"], lease_expires_at=from_us(row["lease_expires_at"])
    )


def attempt_of(row: Row) -> Attempt:
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


def worker_of(row: Row) -> WorkerInfo:
    return WorkerInfo(
        id=row["id"],
        hostname=row["hostname"],
        pid=row["pid"],
        concurrency=row["concurrency"],
        started_at=from_us(row["started_at"]),
        heartbeat_at=from_us(row["heartbeat_at"]),
        running=row["running"],
        labels=tuple(json.loads(row["labels"])),
    )


# -- statement parameters both dialects use (the same columns, the same encodings) --------------
def finish_attempt_args(
    run_id: str, attempt: int, outcome: AttemptOutcome, decision: FinishDecision, now_us: int
) -> dict[str, Any]:
    """The parameters of ``finish_attempt`` (the attempt row)."""
    failure = outcome.failure
    return {
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
    }


def finish_run_args(
    run_id: str,
    outcome: AttemptOutcome,
    decision: FinishDecision,
    result: str | None,
    now_us: int,
    retry_at: datetime | None,
) -> dict[str, Any]:
    """The parameters of ``finish_run`` (the run row; ``result`` already JSON)."""
    pending = decision.run_status == RunStatus.PENDING
    kept = decision.failure
    return {
        "run_id": run_id,
        "status": decision.run_status.value,
        "failure_kind": None if kept is None else kept.kind.value,
        "failure_message": None if kept is None else kept.message,
        "partial": decision.partial,
        "exit_code": outcome.exit_code,
        "result": result,
        "output_truncated": outcome.output_truncated,
        "finished_at": None if pending else now_us,
        "retry_at": us_or_none(retry_at) if pending else None,
    }


def worker_args(info: WorkerInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "hostname": info.hostname,
        "pid": info.pid,
        "concurrency": info.concurrency,
        "started_at": to_us(info.started_at),
        "heartbeat_at": to_us(info.heartbeat_at),
        "running": info.running,
        "labels": json.dumps(sorted(info.labels)),
    }


def hours_of(rows: Iterable[Row]) -> list[HourStats]:
    """``run_history``'s rows (hour, series, bucket, n; ordered by hour) as ``HourStats``."""
    hours: dict[int, HourStats] = {}
    for row in rows:
        hour = hours.get(row["hour"])
        if hour is None:
            hour = hours[row["hour"]] = HourStats(hour=from_us(row["hour"]))
        series, bucket, n = row["series"], row["bucket"], int(row["n"])
        if series == "duration":
            hour.duration[bucket] = n
        elif series == "wait":
            hour.wait[bucket] = n
        else:
            hour.finished[series] = n
    return list(hours.values())
