"""Every fire time on the DST days of Europe/Berlin and America/New_York (2026)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from mcpexec.schedules import ScheduleSpec, next_fires

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"
# (zone, day): Berlin 02:00 CET -> 03:00 CEST and 03:00 CEST -> 02:00 CET;
# New York 02:00 EST -> 03:00 EDT and 02:00 EDT -> 01:00 EST.
SPRING_BERLIN = (BERLIN, (2026, 3, 29))
FALL_BERLIN = (BERLIN, (2026, 10, 25))
SPRING_NY = (NEW_YORK, (2026, 3, 8))
FALL_NY = (NEW_YORK, (2026, 11, 1))


def fires_on(spec: ScheduleSpec, day: tuple[int, int, int]) -> list[str]:
    """Every fire of the local calendar day, as local ISO strings (the offset shows the pass)."""
    zone = ZoneInfo(spec.timezone)
    start = datetime(*day, tzinfo=zone).astimezone(UTC)
    end = (datetime(*day, tzinfo=zone) + timedelta(days=1)).astimezone(UTC)
    fires = next_fires(spec, start - timedelta(seconds=1), 200)
    return [f.isoformat() for f in fires if f.astimezone(UTC) < end]


def hours(day: str, first: int, last: int, offset: str) -> list[str]:
    return [f"{day}T{h:02d}:00:00{offset}" for h in range(first, last + 1)]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (SPRING_BERLIN, hours("2026-03-29", 0, 1, "+01:00") + hours("2026-03-29", 3, 23, "+02:00")),
        (
            FALL_BERLIN,
            hours("2026-10-25", 0, 2, "+02:00") + hours("2026-10-25", 2, 23, "+01:00"),
        ),
        (SPRING_NY, hours("2026-03-08", 0, 1, "-05:00") + hours("2026-03-08", 3, 23, "-04:00")),
        (FALL_NY, hours("2026-11-01", 0, 1, "-04:00") + hours("2026-11-01", 1, 23, "-05:00")),
    ],
)
def test_hourly_keeps_elapsed_rhythm(
    case: tuple[str, tuple[int, int, int]], expected: list[str]
) -> None:
    zone, day = case
    for cron in ("0 * * * *", "@hourly"):
        got = fires_on(ScheduleSpec(cron=cron, timezone=zone), day)
        assert got == expected
    assert len(expected) in (23, 25)


@pytest.mark.parametrize(
    ("case", "cron", "expected"),
    [
        # 02:30 does not exist: once, at the first instant after the gap.
        (SPRING_BERLIN, "30 2 * * *", ["2026-03-29T03:00:00+02:00"]),
        (SPRING_NY, "30 2 * * *", ["2026-03-08T03:00:00-04:00"]),
        # Seconds field too (a wall time of minute and hour).
        (SPRING_BERLIN, "15 30 2 * * *", ["2026-03-29T03:00:00+02:00"]),
        # Two skipped wall times collapse into one fire.
        (SPRING_BERLIN, "0,30 2 * * *", ["2026-03-29T03:00:00+02:00"]),
        # 02:30 happens twice in Berlin: once, at the first pass.
        (FALL_BERLIN, "30 2 * * *", ["2026-10-25T02:30:00+02:00"]),
        (FALL_BERLIN, "0,30 2 * * *", ["2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00"]),
        # New York repeats 01:xx, not 02:30.
        (FALL_NY, "30 2 * * *", ["2026-11-01T02:30:00-05:00"]),
        (FALL_NY, "30 1 * * *", ["2026-11-01T01:30:00-04:00"]),
        # 03:00 exists on every one of these days, exactly once.
        (SPRING_BERLIN, "0 3 * * *", ["2026-03-29T03:00:00+02:00"]),
        (FALL_BERLIN, "0 3 * * *", ["2026-10-25T03:00:00+01:00"]),
        (SPRING_NY, "0 3 * * *", ["2026-03-08T03:00:00-04:00"]),
        (FALL_NY, "0 3 * * *", ["2026-11-01T03:00:00-05:00"]),
    ],
)
def test_wall_times_fire_once(
    case: tuple[str, tuple[int, int, int]], cron: str, expected: list[str]
) -> None:
    zone, day = case
    assert fires_on(ScheduleSpec(cron=cron, timezone=zone), day) == expected


def test_a_skipped_time_fires_on_the_next_days_as_usual() -> None:
    spec = ScheduleSpec(cron="30 2 * * *", timezone=BERLIN)
    fires = next_fires(spec, datetime(2026, 3, 28, 12, tzinfo=UTC), 3)
    assert [f.isoformat() for f in fires] == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]


def test_resuming_inside_the_repeated_hour_does_not_fire_again() -> None:
    # The scheduler fired 02:30 CEST, then restarts at 02:15 CET (the second pass).
    spec = ScheduleSpec(cron="30 2 * * *", timezone=BERLIN)
    second_pass = datetime(2026, 10, 25, 1, 15, tzinfo=UTC)  # 02:15 CET
    assert next_fires(spec, second_pass, 1)[0].isoformat() == "2026-10-26T02:30:00+01:00"


@pytest.mark.parametrize("case", [SPRING_BERLIN, FALL_BERLIN, SPRING_NY, FALL_NY])
@pytest.mark.parametrize("schedule", [{"cron": "*/15 * * * *"}, {"every": "15m"}])
def test_every_15_minutes_is_every_15_real_minutes(
    case: tuple[str, tuple[int, int, int]], schedule: dict[str, str]
) -> None:
    zone_name, day = case
    zone = ZoneInfo(zone_name)
    start = datetime(*day, tzinfo=zone).astimezone(UTC)
    end = (datetime(*day, tzinfo=zone) + timedelta(days=1)).astimezone(UTC)
    count = (end - start) // timedelta(minutes=15)
    expected = [
        (start + k * timedelta(minutes=15)).astimezone(zone).isoformat() for k in range(count)
    ]
    got = fires_on(ScheduleSpec(timezone=zone_name, **schedule), day)  # type: ignore[arg-type]
    assert got == expected
    assert len(got) == (92 if day[1] == 3 else 100)
    # Spelled out around the change, so the expectation is not only arithmetic.
    if case == SPRING_BERLIN:
        assert got[6:9] == [
            "2026-03-29T01:30:00+01:00",
            "2026-03-29T01:45:00+01:00",
            "2026-03-29T03:00:00+02:00",
        ]
    if case == FALL_NY:
        assert got[6:10] == [
            "2026-11-01T01:30:00-04:00",
            "2026-11-01T01:45:00-04:00",
            "2026-11-01T01:00:00-05:00",
            "2026-11-01T01:15:00-05:00",
        ]
