"""Hourly history: quantiles from the rollup's histograms, empty hours, and the overview's
charts computed from them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mcpexec.dashboard.charts import overview_charts, throughput
from mcpexec.history import HistoryPoint, points, quantile
from mcpexec.store.base import ROLLUP_BOUNDS_US, HourStats, rollup_bucket

H0 = datetime(2026, 12, 3, 10, tzinfo=UTC)


def test_buckets_hold_their_upper_bound() -> None:
    assert rollup_bucket(0) == 0
    assert rollup_bucket(5_000) == 0
    assert rollup_bucket(5_001) == 1
    assert rollup_bucket(3_600_000_000) == len(ROLLUP_BOUNDS_US) - 1
    assert rollup_bucket(10**12) == len(ROLLUP_BOUNDS_US)


def test_quantiles_interpolate_within_the_bucket() -> None:
    assert quantile({}, 0.5) is None
    # 10 runs between 100 and 250 ms: the median is halfway through that bucket.
    assert quantile({5: 10}, 0.5) == pytest.approx(0.175)
    # 90 fast runs (<= 5 ms) and 10 slow ones (1-2.5 s): p50 fast, p95 in the slow bucket.
    hist = {0: 90, 8: 10}
    assert quantile(hist, 0.5) == pytest.approx(0.005 * 50 / 90)
    assert quantile(hist, 0.95) == pytest.approx(1.0 + 1.5 * 0.5)
    assert quantile({len(ROLLUP_BOUNDS_US): 3}, 0.95) == 3600.0  # past the last bound


def test_points_fill_the_hours_without_runs() -> None:
    rollup = [HourStats(hour=H0 + timedelta(hours=1), finished={"completed": 3, "failed": 1},
                        duration={4: 4}, wait={0: 4})]  # fmt: skip
    got = points(rollup, H0 + timedelta(minutes=30), 3)
    assert [p.hour for p in got] == [H0 + timedelta(hours=i) for i in range(3)]
    assert got[0] == HistoryPoint(hour=H0)
    assert (got[1].finished, got[1].success_rate) == (4, 0.75)
    assert got[1].duration_p95_s == pytest.approx(0.05 + 0.05 * 0.95)
    assert got[2].success_rate is None


def test_charts_scale_to_the_busiest_hour_and_break_lines_at_empty_hours() -> None:
    hours = [
        HistoryPoint(hour=H0, completed=7, failed=1, duration_p50_s=0.2, duration_p95_s=0.9,
                     wait_p50_s=0.01, wait_p95_s=0.02),
        HistoryPoint(hour=H0 + timedelta(hours=1)),
        HistoryPoint(hour=H0 + timedelta(hours=2), completed=2, cancelled=1,
                     duration_p50_s=0.3, duration_p95_s=0.4, wait_p50_s=0.01, wait_p95_s=0.05),
    ]  # fmt: skip
    bars = throughput(hours)
    assert [b.css for b in bars.bars] == ["ok", "fail", "ok", "stop"]
    assert bars.y_ticks[-1][1] == "10"  # 8 at most: the axis tops at 10
    tallest = bars.bars[0].height + bars.bars[1].height
    assert tallest == pytest.approx((170 - 12 - 26) * 8 / 10)
    assert "11 runs finished in 3 hours" in bars.summary
    success, duration, wait = overview_charts(hours)[1:]
    assert len(success.lines[0].stretches) == 2  # the empty hour breaks the line
    assert [d[2] for d in success.lines[0].dots] == ["87.5 %", "100.0 %"]
    assert duration.y_ticks[-1][1] == "1.0 s"
    assert "50 ms" in wait.summary
