"""Property tests: fires increase, match the cron in local time, and never repeat across DST."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim
from hypothesis import given, settings
from hypothesis import strategies as st

from mcpexec.cron import cron_fields, is_wall_clock
from mcpexec.schedules import MAX_CATCHUP_RUNS, ScheduleSpec, due_fires, fire_key, next_fires

ZONES = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # 30-minute DST shift
    "America/Santiago",  # changes at midnight
    "Asia/Kolkata",
    "Pacific/Chatham",
    "UTC",
]
MINUTES = st.sampled_from(["*", "0", "30", "*/15", "0,30", "5-10", "*/7", "59"])
HOURS = st.sampled_from(["*", "2", "1,2,3", "*/2", "0", "23", "1-3", "*/5"])
DAYS = st.sampled_from(["* * *", "* * 0", "1 * *", "25-31 * *", "* 3,10,11 *", "L * *"])
SECONDS = st.sampled_from([None, "0", "*/20", "30"])


@st.composite
def crons(draw: st.DrawFn) -> str:
    fields = [draw(MINUTES), draw(HOURS), draw(DAYS)]
    seconds = draw(SECONDS)
    return " ".join(([seconds] if seconds else []) + fields)


# Instants around the 2026 transitions of the zones above, and anywhere in the year.
INSTANTS = st.datetimes(
    min_value=datetime(2026, 1, 1),  # naive bounds: hypothesis's rule
    max_value=datetime(2026, 12, 31),
    timezones=st.just(UTC),
)


def local_naive(fire: datetime, zone: str) -> datetime:
    return fire.astimezone(ZoneInfo(zone)).replace(tzinfo=None)


def matches(cron: str, local: datetime) -> bool:
    """cronsim's own answer: is ``local`` (naive wall time) a match of the expression?"""
    return next(CronSim(" ".join(cron_fields(cron)), local - timedelta(seconds=1))) == local


def after_a_change(fire: datetime, zone: str) -> bool:
    """Whether the zone's UTC offset changed during the second before ``fire``."""
    tz = ZoneInfo(zone)
    return (
        fire.astimezone(tz).utcoffset() != (fire - timedelta(seconds=1)).astimezone(tz).utcoffset()
    )


@settings(max_examples=200, deadline=None)
@given(cron=crons(), zone=st.sampled_from(ZONES), after=INSTANTS)
def test_fires_increase_match_and_never_repeat(cron: str, zone: str, after: datetime) -> None:
    spec = ScheduleSpec(cron=cron, timezone=zone)
    fires = next_fires(spec, after, 40)
    instants = [f.astimezone(UTC) for f in fires]
    assert instants, "every generated expression fires within a year"
    assert instants[0] > after
    assert all(a < b for a, b in itertools.pairwise(instants))
    for fire in fires:
        # A fire is a match in local time, or the first instant after a skipped match.
        assert matches(cron, local_naive(fire, zone)) or after_a_change(fire, zone), fire
    if is_wall_clock(cron_fields(cron)):
        walls = [local_naive(f, zone) for f in fires]
        assert len(walls) == len(set(walls)), "an ambiguous wall time fired twice"


@settings(max_examples=100, deadline=None)
@given(cron=crons(), zone=st.sampled_from(ZONES), after=INSTANTS)
def test_resuming_from_any_fire_gives_the_same_sequence(
    cron: str, zone: str, after: datetime
) -> None:
    spec = ScheduleSpec(cron=cron, timezone=zone)
    fires = next_fires(spec, after, 12)
    for i in range(len(fires) - 1):
        assert [fire_key(f) for f in next_fires(spec, fires[i], 1)] == [fire_key(fires[i + 1])]


@settings(max_examples=100, deadline=None)
@given(
    schedule=st.one_of(
        crons().map(lambda c: {"cron": c}),
        st.sampled_from(["7s", "1m", "15m", "1h", "90m"]).map(lambda e: {"every": e}),
    ),
    zone=st.sampled_from(ZONES),
    last=INSTANTS,
    gap_s=st.integers(min_value=0, max_value=6 * 3600),
    window_s=st.integers(min_value=1, max_value=3 * 3600),
)
def test_due_fires_accounts_for_every_fire_once(
    schedule: dict[str, str], zone: str, last: datetime, gap_s: int, window_s: int
) -> None:
    spec = ScheduleSpec(timezone=zone, catchup_window_s=window_s, **schedule)  # type: ignore[arg-type]
    now = last + timedelta(seconds=gap_s)
    between = [f for f in next_fires(spec, last, 1000) if f <= now]
    due = due_fires(spec, last, now)
    if due.missed_capped or len(between) == 1000:
        return
    assert len(due.run) + due.missed == len(between)
    keys = [fire_key(f) for f in between]
    assert [fire_key(f) for f in due.run] == keys[len(keys) - len(due.run) :]
    assert all(now - f <= timedelta(seconds=window_s) for f in due.run)
    if len(due.run) < MAX_CATCHUP_RUNS:  # else the cap, not the window, made the rest missed
        assert all(now - f > timedelta(seconds=window_s) for f in between[: due.missed])
    upcoming = next_fires(spec, now, 1)
    assert (due.next_fire and fire_key(due.next_fire)) == (upcoming and fire_key(upcoming[0]))
