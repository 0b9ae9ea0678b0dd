"""Overview: runs by status, success rate, this process's worker slots, the latest runs."""

from __future__ import annotations

from starlette.responses import Response

from mcpexec.dashboard.page import Get, Nav, View
from mcpexec.models import RunFilter, RunStatus

NAV = Nav("Overview", "/", 10)


async def overview(view: View) -> Response:
    stats = await view.app.stats(view.principal)
    counts = {s.value: stats.by_status.get(s.value, 0) for s in RunStatus}
    ended = counts["completed"] + counts["failed"]
    success = counts["completed"] / ended if ended else None
    latest = await view.app.list_runs(view.principal, RunFilter(), 10)
    return view.render(
        "overview.html",
        title="Overview",
        counts=counts,
        total=sum(counts.values()),
        success=success,
        slots=view.app.worker_slots(),
        isolation=view.app.isolation,
        latest=latest.runs,
    )


ROUTES = [Get("/", overview)]
