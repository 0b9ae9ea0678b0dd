"""Cron expressions over IANA time zones: parsing (cronsim) and DST-correct fire instants.

cronsim parses and matches the fields; this module decides how wall-clock matches become
instants across daylight saving changes (the rules are in ``mcpexec.schedules``' docstring):
expressions naming a specific wall time are matched on the naive wall clock and then placed
(skipped → the first instant after the gap, ambiguous → first occurrence); every other expression
is matched on real instants, so it keeps its rhythm in elapsed time.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

_NAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def cron_fields(expr: str) -> list[str]:
    """The fields of a cron expression, ``@name`` expanded; ``ValueError`` naming the problem.

    Five fields (minute hour day-of-month month day-of-week) or six with a leading seconds
    field, as cronsim reads them.
    """
    text = " ".join(expr.split())
    if text.startswith("@"):
        if text.lower() not in _NAMES:
            raise ValueError(f"cron {expr!r}: unknown name; use one of {', '.join(_NAMES)}")
        text = _NAMES[text.lower()]
    fields = text.split()
    if len(fields) not in (5, 6):
        raise ValueError(
            f"cron {expr!r} has {len(fields)} fields; give 5 (minute hour day-of-month month "
            "day-of-week) or 6 with a leading seconds field"
        )
    try:
        next(CronSim(text, datetime(2000, 1, 1)))
    except CronSimError as exc:
        raise ValueError(f"cron {expr!r}: {exc}") from None
    except StopIteration:
        raise ValueError(f"cron {expr!r} never fires") from None
    return fields


def is_wall_clock(fields: list[str]) -> bool:
    """Whether the expression names specific wall times (Debian cron's DST special case)."""
    minute, hour = fields[-5], fields[-4]
    return not minute.startswith("*") and not hour.startswith("*")


def cron_instants(fields: list[str], zone: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """Fire instants (UTC, strictly increasing) strictly after the aware ``after``."""
    expr = " ".join(fields)
    last = after.astimezone(UTC)
    if is_wall_clock(fields):
        naive = last.astimezone(zone).replace(tzinfo=None)
        instants = (place(local, zone) for local in CronSim(expr, naive))
    else:
        instants = (local.astimezone(UTC) for local in CronSim(expr, last.astimezone(zone)))
    for instant in instants:
        # Wall-clock matches inside a repeated hour can map before ``after`` and several
        # skipped ones map to one instant: each instant fires once, in order.
        if instant > last:
            last = instant
            yield instant


def place(local: datetime, zone: ZoneInfo) -> datetime:
    """The instant (UTC) a naive wall time fires at: its first occurrence, or after the gap."""
    instant = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == local:
        return instant
    return _gap_end(local, zone)


def _gap_end(local: datetime, zone: ZoneInfo) -> datetime:
    """The first instant after the gap that skips the imaginary wall time ``local``.

    zoneinfo reads an imaginary time with the offset after the change (fold=1, an instant
    before the change) or before it (fold=0, an instant after it); the change is bisected to
    the second between them.
    """
    low = int(local.replace(tzinfo=zone, fold=1).timestamp())
    high = int(local.replace(tzinfo=zone, fold=0).timestamp())
    if high < low:
        low, high = high, low
    before = datetime.fromtimestamp(low, zone).utcoffset()
    while high - low > 1:
        mid = (low + high) // 2
        if datetime.fromtimestamp(mid, zone).utcoffset() == before:
            low = mid
        else:
            high = mid
    return datetime.fromtimestamp(high, UTC)
