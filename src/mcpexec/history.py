"""The runs of the last hours, hour by hour, for the overview's charts and
``GET /api/v1/stats/history`` (issue 17): counts by outcome, success rate, and the median and
95th percentile of duration and queue wait, estimated from the store's hourly histograms
(``Store.run_history``) as Prometheus' ``histogram_quantile`` does (linear within a bucket)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from mcpexec.store.base import ROLLUP_BOUNDS_US, HourStats

HOUR = timedelta(hours=1)
#: The longest history the overview and GET /api/v1/stats/history show: a month of hours. The
#: reaper prunes the rollup beyond it (``Store.prune_history``): nothing reads further back.
MAX_HISTORY_HOURS = 24 * 31


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """One hour: runs that finished in it (by outcome) and their latency quantiles (seconds;
    ``None`` when no run of the hour had started)."""

    hour: datetime
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    duration_p50_s: float | None = None
    duration_p95_s: float | None = None
    wait_p50_s: float | None = None
    wait_p95_s: float | None = None

    @property
    def finished(self) -> int:
        return self.completed + self.failed + self.cancelled

    @property
    def success_rate(self) -> float | None:
        """Completed of completed + failed (cancelled runs are neither)."""
        ended = self.completed + self.failed
        return self.completed / ended if ended else None


def quantile(histogram: dict[int, int], q: float) -> float | None:
    """The ``q`` quantile (seconds) of a histogram of ``ROLLUP_BOUNDS_US`` buckets: the bucket
    holding the rank, interpolated linearly; past the last bound, the last bound."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank, seen = q * total, 0
    for bucket in sorted(histogram):
        n = histogram[bucket]
        if seen + n >= rank:
            if bucket >= len(ROLLUP_BOUNDS_US):
                return ROLLUP_BOUNDS_US[-1] / 1e6
            lower = ROLLUP_BOUNDS_US[bucket - 1] if bucket else 0
            upper = ROLLUP_BOUNDS_US[bucket]
            return (lower + (upper - lower) * (rank - seen) / n) / 1e6
        seen += n
    return ROLLUP_BOUNDS_US[-1] / 1e6  # not reached: the ranks end at total


def points(hours: list[HourStats], start: datetime, count: int) -> list[HistoryPoint]:
    """``count`` consecutive hours from the one holding ``start``, with the empty ones."""
    first = start.replace(minute=0, second=0, microsecond=0)
    by_hour = {h.hour: h for h in hours}
    out = []
    for i in range(count):
        hour = first + i * HOUR
        stats = by_hour.get(hour)
        if stats is None:
            out.append(HistoryPoint(hour=hour))
            continue
        out.append(
            HistoryPoint(
                hour=hour,
                completed=stats.finished.get("completed", 0),
                failed=stats.finished.get("failed", 0),
                cancelled=stats.finished.get("cancelled", 0),
                duration_p50_s=quantile(stats.duration, 0.5),
                duration_p95_s=quantile(stats.duration, 0.95),
                wait_p50_s=quantile(stats.wait, 0.5),
                wait_p95_s=quantile(stats.wait, 0.95),
            )
        )
    return out
