"""Schedule specs, next fires, catch-up, overlap and jitter (pure, with an injected clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from mcpexec.schedules import (
    MAX_CATCHUP_RUNS,
    MAX_COUNTED_MISSED,
    OverlapAction,
    OverlapPolicy,
    ScheduleSpec,
    due_fires,
    fire_jitter,
    fire_key,
    next_fires,
    overlap_decision,
    parse_interval,
)

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def test_seed_us2_every_minute_over_ten_simulated_minutes() -> None:
    """A loop driven by an injected clock: sleep until next_fire, then run what is due."""
    spec = ScheduleSpec(cron="* * * * *")
    handled, now, ran = T0, T0, []  # created at T0
    while True:
        due = due_fires(spec, handled, now)
        ran.extend(due.run)
        assert due.missed == 0
        handled = now
        assert due.next_fire is not None
        if due.next_fire > T0 + 10 * MINUTE:
            break
        now = due.next_fire + timedelta(milliseconds=3)  # the loop wakes a little late
    assert ran == [T0 + k * MINUTE for k in range(1, 11)]


@pytest.mark.parametrize("schedule", [{"cron": "* * * * *"}, {"every": "1m"}])
def test_catch_up_after_ten_missed_periods(schedule: dict[str, Any]) -> None:
    spec = ScheduleSpec(catchup_window_s=180, **schedule)
    due = due_fires(spec, T0, T0 + 10 * MINUTE + timedelta(seconds=30))
    assert due.run == [T0 + 8 * MINUTE, T0 + 9 * MINUTE, T0 + 10 * MINUTE]
    assert (due.missed, due.missed_capped) == (7, False)
    assert due.next_fire == T0 + 11 * MINUTE


def test_catch_up_window_edge_is_inclusive() -> None:
    spec = ScheduleSpec(every="1m", catchup_window_s=120)
    due = due_fires(spec, T0, T0 + 5 * MINUTE)
    assert due.run == [T0 + 3 * MINUTE, T0 + 4 * MINUTE, T0 + 5 * MINUTE]
    assert due.missed == 2


@pytest.mark.parametrize(
    ("schedule", "missed", "capped"),
    [
        ({"cron": "* * * * * *"}, MAX_COUNTED_MISSED, True),
        ({"every": "1s"}, 365 * 86_400 - MAX_CATCHUP_RUNS, False),
    ],
)
@pytest.mark.timeout(30)
def test_a_year_long_gap_stays_bounded(schedule: dict[str, Any], missed: int, capped: bool) -> None:
    spec = ScheduleSpec(catchup_window_s=366 * 86_400, **schedule)
    due = due_fires(spec, T0 - timedelta(days=365), T0)
    assert len(due.run) == MAX_CATCHUP_RUNS
    assert due.run[0] == T0 - timedelta(seconds=MAX_CATCHUP_RUNS - 1)
    assert due.run[-1] == T0
    assert (due.missed, due.missed_capped) == (missed, capped)


def test_nothing_due_when_paused_or_when_the_clock_went_back() -> None:
    paused = ScheduleSpec(every="1m", paused=True)
    due = due_fires(paused, T0, T0 + 10 * MINUTE)
    assert (due.run, due.missed, due.next_fire) == ([], 0, None)
    spec = ScheduleSpec(every="1m")
    back = due_fires(spec, T0, T0 - MINUTE)
    assert (back.run, back.missed, back.next_fire) == ([], 0, T0 + MINUTE)


@pytest.mark.parametrize(
    ("policy", "running", "buffered", "action"),
    [
        (OverlapPolicy.SKIP, False, 0, OverlapAction.START),
        (OverlapPolicy.SKIP, True, 0, OverlapAction.SKIP),
        (OverlapPolicy.BUFFER_ONE, False, 0, OverlapAction.START),
        (OverlapPolicy.BUFFER_ONE, True, 0, OverlapAction.BUFFER),
        (OverlapPolicy.BUFFER_ONE, True, 1, OverlapAction.SKIP),
        (OverlapPolicy.ALLOW_ALL, True, 0, OverlapAction.START),
        (OverlapPolicy.ALLOW_ALL, True, 5, OverlapAction.START),
        (OverlapPolicy.CANCEL_PREVIOUS, False, 0, OverlapAction.START),
        (OverlapPolicy.CANCEL_PREVIOUS, True, 0, OverlapAction.CANCEL_PREVIOUS_THEN_START),
    ],
)
def test_overlap_decision(
    policy: OverlapPolicy, running: bool, buffered: int, action: OverlapAction
) -> None:
    assert overlap_decision(policy, previous_running=running, buffered=buffered) is action


def test_overlap_default_is_skip() -> None:
    assert ScheduleSpec(every="1m").overlap is OverlapPolicy.SKIP


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("30s", 30), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("2d", 172_800), (90, 90)],
)
def test_intervals(value: str | int, seconds: int) -> None:
    assert parse_interval(value) == seconds
    assert ScheduleSpec(every=value).interval_s == seconds


def test_intervals_are_anchored_on_the_epoch_or_start_at() -> None:
    spec = ScheduleSpec(every="5m")
    after = datetime(2026, 12, 1, 3, 2, 17, tzinfo=UTC)
    assert next_fires(spec, after, 2) == [T0 + 5 * MINUTE, T0 + 10 * MINUTE]
    start = datetime(2026, 12, 1, 3, 1, 30, tzinfo=UTC)
    anchored = ScheduleSpec(every="5m", start_at=start)
    assert next_fires(anchored, T0, 2) == [start, start + 5 * MINUTE]
    assert next_fires(anchored, start, 1) == [start + 5 * MINUTE]


def test_start_and_end_bound_the_fires() -> None:
    spec = ScheduleSpec(
        cron="0 * * * *",
        start_at=datetime(2026, 12, 1, 10, 30, tzinfo=UTC),
        end_at=datetime(2026, 12, 1, 13, 0, tzinfo=UTC),
    )
    fires = next_fires(spec, T0, 10)
    assert [f.hour for f in fires] == [11, 12, 13]
    assert next_fires(spec, datetime(2026, 12, 1, 13, 0, tzinfo=UTC), 5) == []
    due = due_fires(spec, T0, datetime(2026, 12, 2, tzinfo=UTC))
    assert due.next_fire is None
    assert len(due.run) + due.missed == 3


def test_start_at_is_a_fire_when_it_matches() -> None:
    start = datetime(2026, 12, 1, 11, 0, tzinfo=UTC)
    spec = ScheduleSpec(cron="0 * * * *", start_at=start)
    assert next_fires(spec, T0, 1) == [start]


def test_seconds_field_and_names() -> None:
    fires = next_fires(ScheduleSpec(cron="*/15 * * * * *"), T0, 5)
    assert [f.second for f in fires] == [15, 30, 45, 0, 15]
    daily = next_fires(ScheduleSpec(cron="@daily", timezone="Europe/Berlin"), T0, 1)
    assert daily[0].isoformat() == "2026-12-02T00:00:00+01:00"
    weekly = next_fires(ScheduleSpec(cron="@WEEKLY"), T0, 1)  # 2026-12-06 is a Sunday
    assert weekly == [datetime(2026, 12, 6, tzinfo=UTC)]


def test_next_fires_are_in_the_schedules_zone() -> None:
    spec = ScheduleSpec(cron="0 3 * * *", timezone="Europe/Berlin")
    fires = next_fires(spec, T0, 5)
    assert [f.isoformat() for f in fires] == [
        f"2026-12-{d:02d}T03:00:00+01:00" for d in range(2, 7)
    ]
    with pytest.raises(ValueError, match="between 0 and"):
        next_fires(spec, T0, 10_000)
    with pytest.raises(ValueError, match="aware"):
        next_fires(spec, datetime(2026, 1, 1), 1)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"cron": "61 * * * *"}, "Bad minute"),
        ({"cron": "* * *"}, "has 3 fields"),
        ({"cron": "0 0 31 2 *"}, "Bad day-of-month"),
        ({"cron": "@reboot"}, "unknown name"),
        ({"cron": "*/0 * * * *"}, "Bad minute"),
        ({"every": "5x"}, "not an interval"),
        ({"every": "1m30h"}, "in that order"),
        ({"every": "0s"}, "between 1 second"),
        ({"every": "400d"}, "between 1 second"),
        ({"every": ""}, "not an interval"),
        ({"every": 1.5}, "whole number of seconds"),
        ({"cron": "* * * * *", "every": "1m"}, "exactly one"),
        ({}, "exactly one"),
        ({"every": "1m", "timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"every": "1m", "timezone": "../../etc/passwd"}, "unknown time zone"),
        ({"every": "1m", "start_at": "2026-01-01T00:00:00"}, "need a time zone"),
        ({"every": "1m", "start_at": -4.4e-149}, "not a number"),  # Unix seconds, as pydantic reads
        ({"every": "1m", "end_at": 1767225600}, "not a number"),
        (
            {"every": "1m", "start_at": "2026-02-01T00:00:00Z", "end_at": "2026-01-01T00:00:00Z"},
            "before start_at",
        ),
        ({"every": "1m", "overlap": "buffer_all"}, "skip"),
        ({"every": "1m", "catchup_window_s": 0}, "greater than or equal to 1"),
        ({"every": "1m", "surprise": 1}, "Extra inputs"),
    ],
)
def test_invalid_specs_name_the_problem(body: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        ScheduleSpec.model_validate(body)


def test_jitter_is_deterministic_and_bounded() -> None:
    fires = [T0 + k * MINUTE for k in range(200)]
    delays = [fire_jitter("sch_1", f, 30.0) for f in fires]
    assert delays == [fire_jitter("sch_1", f, 30.0) for f in fires]
    assert all(timedelta(0) <= d < timedelta(seconds=30) for d in delays)
    assert len(set(delays)) > 150  # spread, not one constant
    assert delays != [fire_jitter("sch_2", f, 30.0) for f in fires]
    assert fire_jitter("sch_1", T0, 0) == timedelta(0)


def test_fire_key_is_one_spelling_per_instant() -> None:
    berlin = next_fires(ScheduleSpec(cron="0 * * * *", timezone="Europe/Berlin"), T0, 1)[0]
    assert fire_key(berlin) == fire_key(berlin.astimezone(UTC)) == "2026-12-01T04:00:00Z"
    # The two 02:00s of a fall-back day are different keys.
    spec = ScheduleSpec(cron="0 * * * *", timezone="Europe/Berlin")
    first, second = next_fires(spec, datetime(2026, 10, 24, 23, 30, tzinfo=UTC), 2)
    assert first.hour == second.hour == 2
    assert fire_key(first) != fire_key(second)
