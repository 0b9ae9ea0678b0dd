"""Overview: runs by status, success rate, this process's worker slots, charts of the last 24
hours (throughput, success rate, p50/p95 duration and queue wait) and the latest runs."""

from __future__ import annotations

from starlette.responses import Response

from mcpexec.dashboard.charts import overview_charts
from mcpexec.dashboard.page import Get, Nav, View
from mcpexec.models import RunFilter, RunStatus

NAV = Nav("Overview", "/", 10)
HOURS = 24


async def overview(view: View) -> Response:
    stats = await view.app.stats(view.principal)
    counts = {s.value: stats.by_status.get(s.value, 0) for s in RunStatus}
    ended = counts["completed"] + counts["failed"]
    success = counts["completed"] / ended if ended else None
    latest = await view.app.list_runs(view.principal, RunFilter(), 10)
    hours = await view.app.run_history(view.principal, HOURS)
    return view.render(
        "overview.html",
        title="Overview",
        counts=counts,
        total=sum(counts.values()),
        success=success,
        slots=view.app.worker_slots(),
        isolation=view.app.isolation,
        latest=latest.runs,
        charts=overview_charts(hours),
        hours=[h for h in hours if h.finished],
    )


ROUTES = [Get("/", overview)]
