"""Rules every store implementation shares, so that they cannot drift apart.

Pure functions: time conversion and the decision of what a finished attempt does to its run;
and the in-process wake-up of stores that cannot notify across processes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from mcpexec.aio import wait_event
from mcpexec.models import Failure, FailureKind, RunStatus
from mcpexec.store.base import AttemptOutcome

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Row(Protocol):
    """A result row read by column name: ``sqlite3.Row`` or psycopg's ``dict_row``. Both
    dialects keep the same columns, so one set of decoders serves them."""

    def __getitem__(self, key: str, /) -> Any: ...


_MICROSECOND = timedelta(microseconds=1)
CANCELLED_MESSAGE = "cancelled by request"


def utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime; naive datetimes are refused rather than guessed."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: the store needs timezone-aware times")
    return value.astimezone(UTC)


def to_us(value: datetime) -> int:
    """Integer microseconds since the epoch: exact, unlike REAL seconds, and index-friendly."""
    return (utc(value) - EPOCH) // _MICROSECOND


def from_us(value: int) -> datetime:
    return EPOCH + value * _MICROSECOND


@dataclass(frozen=True, slots=True)
class FinishDecision:
    run_status: RunStatus
    attempt_status: RunStatus
    failure: Failure | None
    partial: bool


def decide_finish(
    outcome: AttemptOutcome, cancel_requested: bool, retry: bool, has_artifacts: bool
) -> FinishDecision:
    """What ``Store.finish_attempt`` does to the run; precedence: completed > cancelled >
    retry (pending) > failed. The attempt keeps the worker's own failure; a cancelled run always
    carries failure kind ``cancelled`` so that every cancelled run reads the same."""
    if outcome.succeeded:
        return FinishDecision(RunStatus.COMPLETED, RunStatus.COMPLETED, None, partial=False)
    failure = outcome.failure
    if cancel_requested or (failure is not None and failure.kind == FailureKind.CANCELLED):
        message = failure.message if failure is not None else CANCELLED_MESSAGE
        return FinishDecision(
            RunStatus.CANCELLED,
            RunStatus.CANCELLED,
            Failure(kind=FailureKind.CANCELLED, message=message),
            partial=has_artifacts,
        )
    if retry:
        return FinishDecision(RunStatus.PENDING, RunStatus.FAILED, failure, partial=False)
    return FinishDecision(RunStatus.FAILED, RunStatus.FAILED, failure, partial=has_artifacts)


class WorkSignal:
    """``Store.wait_for_work`` for a dialect that cannot notify other processes: woken by this
    store object's own enqueues and retries, otherwise a bounded wait. A notification given
    while nobody waits is kept for the next wait (no lost wake-up)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        woken = await wait_event(self._event, timeout)
        self._event.clear()
        return woken
