"""Schedule math: when a schedule fires, what is due after downtime, what to do on overlap.

Pure functions of an injected ``now``; the loop that sleeps until the next fire and the store that
records each fire under a unique key on (schedule, fire time) live elsewhere
(``scheduler.py`` and the store; ``docs/architecture.md``, "Tasks and schedules").

A schedule is either a ``cron`` expression or a fixed interval (``every``):

- ``cron``: five fields (minute hour day-of-month month day-of-week), or six with a leading
  seconds field (``*/15 * * * * *``), or one of ``@yearly @annually @monthly @weekly @daily
  @midnight @hourly``. Parsed and matched by cronsim, evaluated in the schedule's IANA
  ``timezone``.
- ``every``: ``30s``, ``5m``, ``1h30m``, ``2d`` (or a number of seconds). Fires at
  ``start_at + k * every`` (the Unix epoch when there is no ``start_at``), so every scheduler
  process computes the same instants. Intervals are elapsed time; the zone does not move them.

Daylight saving time (the rules of Debian's cron, as cronsim implements them):

- An expression that names a specific wall time (minute and hour fields both without a leading
  ``*``, e.g. ``30 2 * * *``) is matched on the wall clock. A wall time skipped by a spring-forward
  fires once, at the first valid instant after the gap (03:00 for 02:30 in Europe/Berlin); several
  skipped wall times collapse into that one fire. An ambiguous wall time of a fall-back fires
  once, at its first occurrence.
- An expression that runs every hour or more often (a leading ``*`` in the minute or hour field,
  e.g. ``0 * * * *``, ``*/15 * * * *``) keeps its rhythm in elapsed time: an hourly schedule fires
  23 times on a spring-forward day and 25 times on a fall-back day, never twice at one instant.

Every function returns aware datetimes in the schedule's zone. Compare and key them in UTC
(:func:`fire_key`): Python compares two datetimes of the *same* zone by wall time and ignores
``fold``, which is wrong inside a repeated hour.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    field_validator,
    model_validator,
)

from mcpexec.cron import cron_fields, cron_instants
from mcpexec.models import IsoDateTime, json_integer

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_INTERVAL_S = 366 * 86_400
MAX_NEXT = 1000
#: At most this many fires are returned to run after downtime (the most recent ones).
MAX_CATCHUP_RUNS = 100
#: Counting missed cron fires stops after this many (``DueFires.missed_capped``): a year-long
#: gap in an every-second schedule must not stall the scheduler.
MAX_COUNTED_MISSED = 10_000
_ONE_US = timedelta(microseconds=1)
_ONE_S = timedelta(seconds=1)
_INTERVAL = re.compile(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")
#: The interval's spelling for the OpenAPI document (its range, 1 s to 366 days, is checked).
INTERVAL_PATTERN = "^\\s*(?:[0-9]+[dD])?(?:[0-9]+[hH])?(?:[0-9]+[mM])?(?:[0-9]+[sS])?\\s*$"


#: The bounds of a schedule's policies, one place for a new schedule and a change to one.
JitterS = Annotated[StrictFloat, Field(ge=0.0, le=86_400.0)]
CatchupWindowS = Annotated[
    StrictFloat,
    Field(
        ge=1.0,
        le=366 * 86_400.0,
        description="after downtime, fires older than this are recorded as missed, not run",
    ),
]

#: ``every``: a spelled interval or a number of seconds.
Interval = (
    Annotated[str, Field(max_length=64, pattern=INTERVAL_PATTERN)]
    # The bounds before the validator: after it, pydantic writes them as ge/le (json_integer).
    | Annotated[int, Field(ge=1, le=MAX_INTERVAL_S), BeforeValidator(json_integer)]
)


def _one_rhythm(schema: dict[str, Any]) -> None:
    """Exactly one of ``cron`` and ``every``, in the document as the validator has it."""
    schema["oneOf"] = [
        {
            "required": ["cron"],
            "properties": {"cron": {"type": "string"}, "every": {"type": "null"}},
        },
        {
            "required": ["every"],
            "properties": {"every": {"not": {"type": "null"}}, "cron": {"type": "null"}},
        },
    ]


_UNIT_S = (86_400, 3600, 60, 1)


class OverlapPolicy(StrEnum):
    """What a fire does while the previous fire's run is still running (Temporal's set)."""

    SKIP = "skip"
    BUFFER_ONE = "buffer_one"
    ALLOW_ALL = "allow_all"
    CANCEL_PREVIOUS = "cancel_previous"


class OverlapAction(StrEnum):
    START = "start"
    SKIP = "skip"
    BUFFER = "buffer"
    CANCEL_PREVIOUS_THEN_START = "cancel_previous_then_start"


def parse_interval(value: str | int | float) -> int:
    """``30s``/``5m``/``1h30m``/``2d`` or a number of seconds → whole seconds (1 s … 366 days)."""
    if isinstance(value, bool):
        raise ValueError("every must be an interval such as 30s, 5m, 1h30m or 2d")
    if isinstance(value, int | float):
        if value != int(value):
            raise ValueError("every must be a whole number of seconds")
        seconds = int(value)
    else:
        match = _INTERVAL.fullmatch(value.strip().lower())
        if not value.strip() or match is None:
            raise ValueError(
                f"every {value!r} is not an interval such as 30s, 5m, 1h30m or 2d "
                "(units d, h, m, s in that order)"
            )
        seconds = sum(int(n) * unit for n, unit in zip(match.groups(), _UNIT_S, strict=True) if n)
    if not 1 <= seconds <= MAX_INTERVAL_S:
        raise ValueError("every must be between 1 second and 366 days")
    return seconds


class ScheduleSpec(BaseModel):
    """When a schedule fires and its policies. Exactly one of ``cron`` and ``every``."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_one_rhythm)

    cron: str | None = Field(default=None, min_length=1, max_length=256)
    every: Interval | None = Field(
        default=None, description="interval: 30s, 5m, 1h30m, 2d, or seconds"
    )
    timezone: str = Field(default="UTC", max_length=64, description="IANA zone name")
    start_at: IsoDateTime | None = Field(default=None, description="no fires before (ISO 8601)")
    end_at: IsoDateTime | None = Field(default=None, description="no fires after (ISO 8601)")
    jitter_s: JitterS = 0.0
    overlap: OverlapPolicy = OverlapPolicy.SKIP
    catchup_window_s: CatchupWindowS = 3600.0
    paused: StrictBool = False

    # Before the type's own checks, so that a bad value gets the message that says what to write
    # rather than the document's pattern.
    @field_validator("cron", mode="before")
    @classmethod
    def _cron(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        cron_fields(value)
        return " ".join(value.split())

    @field_validator("every", mode="before")
    @classmethod
    def _every(cls, value: object) -> object:
        if isinstance(value, str | int | float):
            parse_interval(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as Europe/Berlin or UTC"
            ) from None
        return value

    @field_validator("start_at", "end_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("start_at/end_at need a time zone (e.g. 2026-01-01T12:00:00Z)")
        return value.astimezone(UTC) if value is not None else None

    @model_validator(mode="after")
    def _one_kind(self) -> ScheduleSpec:
        if (self.cron is None) == (self.every is None):
            raise ValueError("give exactly one of 'cron' (expression) or 'every' (interval)")
        if self.start_at and self.end_at and self.end_at < self.start_at:
            raise ValueError("end_at is before start_at")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def interval_s(self) -> int | None:
        return None if self.every is None else parse_interval(self.every)


@dataclass(frozen=True)
class DueFires:
    """What :func:`due_fires` found between the last handled instant and ``now``."""

    #: Fires to run now, oldest first (at most ``MAX_CATCHUP_RUNS``, the most recent ones).
    run: list[datetime]
    #: Fires that were due but are older than the catch-up window (or beyond the cap).
    missed: int
    #: ``missed`` is a lower bound: counting stopped at ``MAX_COUNTED_MISSED``.
    missed_capped: bool
    #: The first fire after ``now`` (sleep until then), or ``None`` if there is none / paused.
    next_fire: datetime | None


def fire_key(fire: datetime) -> str:
    """The fire time as the store's key: ISO 8601 in UTC (one spelling per instant)."""
    if fire.tzinfo is None:
        raise ValueError("fire times are aware datetimes")
    return fire.astimezone(UTC).isoformat().replace("+00:00", "Z")


def fire_jitter(schedule_id: str, fire: datetime, jitter_s: float) -> timedelta:
    """A delay in [0, jitter_s) derived from (schedule, fire time), so all schedulers agree.

    The fire keeps its nominal time as its key; the run it creates waits for ``fire + jitter``.
    """
    if jitter_s <= 0:
        return timedelta(0)
    digest = hashlib.sha256(f"{schedule_id}\0{fire_key(fire)}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return timedelta(milliseconds=int(fraction * jitter_s * 1000))


def overlap_decision(policy: OverlapPolicy, previous_running: bool, buffered: int) -> OverlapAction:
    """What a new fire does, given whether the schedule's previous run is still running.

    ``buffered`` is how many fires already wait for the running one (``buffer_one`` keeps at most
    one; the integrator starts it when the running run finishes).
    """
    if not previous_running or policy is OverlapPolicy.ALLOW_ALL:
        return OverlapAction.START
    if policy is OverlapPolicy.CANCEL_PREVIOUS:
        return OverlapAction.CANCEL_PREVIOUS_THEN_START
    if policy is OverlapPolicy.BUFFER_ONE and buffered < 1:
        return OverlapAction.BUFFER
    return OverlapAction.SKIP


def next_fires(spec: ScheduleSpec, after: datetime, n: int = 1) -> list[datetime]:
    """The next ``n`` fires strictly after ``after``, within start_at/end_at, in the zone.

    Ignores ``paused`` (that is the loop's business); fewer than ``n`` when ``end_at`` is near.
    """
    if not 0 <= n <= MAX_NEXT:
        raise ValueError(f"n must be between 0 and {MAX_NEXT}")
    zone = spec.zone
    out: list[datetime] = []
    for fire in _fires(spec, _aware_utc(after)):
        if len(out) == n:
            break
        out.append(fire.astimezone(zone))
    return out


def due_fires(spec: ScheduleSpec, last_fire: datetime, now: datetime) -> DueFires:
    """Fires in (last_fire, now]: those to run, and a count of those missed (never a list).

    ``last_fire`` is the instant up to which fires were handled: the last fire time, or the
    schedule's creation (or resume) time for a schedule that has not fired. A fire is run when
    ``now - fire <= catchup_window_s``; older ones are missed. While paused nothing is due and
    nothing is counted missed (pass the resume time as ``last_fire`` on resume).
    """
    last, current = _aware_utc(last_fire), _aware_utc(now)
    zone = spec.zone
    if spec.paused:
        return DueFires(run=[], missed=0, missed_capped=False, next_fire=None)
    upcoming = next(iter(_fires(spec, max(last, current))), None)
    next_fire = upcoming.astimezone(zone) if upcoming is not None else None
    if current <= last:
        return DueFires(run=[], missed=0, missed_capped=False, next_fire=next_fire)
    window_start = max(last, current - timedelta(seconds=spec.catchup_window_s) - _ONE_US)
    recent, first_run = _latest(spec, window_start, current)
    missed, capped = _count(spec, last, first_run, limit=MAX_COUNTED_MISSED)
    return DueFires(
        run=[f.astimezone(zone) for f in recent],
        missed=missed,
        missed_capped=capped,
        next_fire=next_fire,
    )


def _latest(spec: ScheduleSpec, lo: datetime, hi: datetime) -> tuple[list[datetime], datetime]:
    """The last MAX_CATCHUP_RUNS fires in (lo, hi], and the instant up to which all are missed.

    Bisects on the start instant with counts that stop at the cap, so the work is about
    ``cap * log2(window in seconds)`` fires however large the window or dense the schedule.
    Fires are at least a second apart, so a one-second step holds at most one fire.
    """
    cap = MAX_CATCHUP_RUNS
    if _count(spec, lo, hi, limit=cap + 1)[0] > cap:
        low, high = lo, hi  # count(low, hi] > cap >= count(high, hi]
        while high - low > _ONE_S:
            mid = low + (high - low) / 2
            if _count(spec, mid, hi, limit=cap + 1)[0] > cap:
                low = mid
            else:
                high = mid
        lo = low
    fires = list(itertools.takewhile(lambda f: f <= hi, _fires(spec, lo)))
    if len(fires) > cap:
        return fires[-cap:], fires[-cap - 1]
    return fires, lo


def _count(spec: ScheduleSpec, lo: datetime, hi: datetime, limit: int) -> tuple[int, bool]:
    """How many fires lie in (lo, hi], and whether counting cron fires stopped at ``limit``."""
    if hi <= lo:
        return 0, False
    if spec.interval_s is not None:  # arithmetic, so always exact
        return _interval_upto(spec, hi) - _interval_upto(spec, lo), False
    count = 0
    for fire in _fires(spec, lo):
        if fire > hi:
            return count, False
        if count == limit:
            return count, True
        count += 1
    return count, False


def _interval_upto(spec: ScheduleSpec, at: datetime) -> int:
    """How many interval fires lie at or before ``at``."""
    anchor = spec.start_at or EPOCH
    end = at if spec.end_at is None else min(at, spec.end_at)
    if end < anchor:
        return 0
    return (end - anchor) // timedelta(seconds=spec.interval_s or 1) + 1


def _fires(spec: ScheduleSpec, after: datetime) -> Iterator[datetime]:
    """Fires strictly after ``after`` (UTC, increasing), within start_at/end_at."""
    if spec.start_at is not None and after < spec.start_at:
        after = spec.start_at - _ONE_US
    if spec.cron is not None:
        source = cron_instants(cron_fields(spec.cron), spec.zone, after)
    else:
        source = _interval_fires(spec, after)
    for fire in source:
        if spec.end_at is not None and fire > spec.end_at:
            return
        yield fire


def _interval_fires(spec: ScheduleSpec, after: datetime) -> Iterator[datetime]:
    anchor = spec.start_at or EPOCH
    period = timedelta(seconds=spec.interval_s or 1)
    k = 0 if after < anchor else (after - anchor) // period + 1
    while True:
        yield anchor + k * period
        k += 1


def _aware_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("times must be aware datetimes (with a time zone)")
    return value.astimezone(UTC)
