"""Schedules: what fires when, and how the last fire went."""

from __future__ import annotations

from starlette.responses import Response

from mcpexec.dashboard.format import when
from mcpexec.dashboard.page import Column, Get, Nav, View
from mcpexec.schedule_ops import schedule_view

NAV = Nav("Schedules", "/schedules", 40)
COLUMNS = [
    Column("Schedule", mono=True, link="runs_href"),
    Column("Task"),
    Column("When"),
    Column("Next fire"),
    Column("Last fire"),
    Column("Last outcome"),
    Column("Missed"),
    Column("State"),
]


async def schedules(view: View) -> Response:
    rows = []
    for record in await view.app.schedules.list_schedules(view.principal):
        shown = schedule_view(record)
        every = shown.get("every")
        rows.append(
            {
                "Schedule": record.id,
                "runs_href": f"/ui/runs?label=schedule%3D{record.id}",
                "Task": record.task,
                "When": shown.get("cron") or f"every {every}",
                "Next fire": when(shown["next_fire_at"]),
                "Last fire": when(shown["last_fire_at"]),
                "Last outcome": shown["last_outcome"] or "—",
                "Missed": shown["missed_count"],
                "State": "paused" if shown.get("paused") else "active",
            }
        )
    return view.table("Schedules", COLUMNS, rows, empty="No schedule exists.")


ROUTES = [Get("/schedules", schedules)]
