"""Schedules: what fires when, how the last fire went; pause, resume and trigger."""

from __future__ import annotations

from starlette.responses import Response

from mcpexec.dashboard.format import when
from mcpexec.dashboard.page import Button, Column, Get, Nav, Post, View
from mcpexec.schedule_ops import schedule_view
from mcpexec.tenancy import Action

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
    Column("Actions", actions=True),
]


async def schedules(view: View) -> Response:
    rows = []
    for record in await view.app.schedules.list_schedules(view.principal):
        shown = schedule_view(record)
        every = shown.get("every")
        paused = bool(shown.get("paused"))
        base = f"/ui/schedules/{record.id}"
        buttons = []
        # the rule of ScheduleOps._changeable: may submit, and may cancel what it owns
        if view.can(Action.SUBMIT) and view.can(
            Action.CANCEL, tenant=record.tenant, owner=record.owner
        ):
            buttons = [
                Button("Resume", f"{base}/resume") if paused else Button("Pause", f"{base}/pause"),
                Button("Trigger now", f"{base}/trigger"),
            ]
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
                "State": "paused" if paused else "active",
                "Actions": buttons,
            }
        )
    return view.table("Schedules", COLUMNS, rows, empty="No schedule exists.")


async def pause(view: View) -> Response:
    await view.app.schedules.pause(view.param("schedule_id"), view.principal)
    return view.redirect("/ui/schedules")


async def resume(view: View) -> Response:
    await view.app.schedules.resume(view.param("schedule_id"), view.principal)
    return view.redirect("/ui/schedules")


async def trigger(view: View) -> Response:
    run = await view.app.schedules.trigger(view.param("schedule_id"), view.principal)
    return view.redirect(f"/ui/runs/{run.id}")


ROUTES = [
    Get("/schedules", schedules),
    Post("/schedules/{schedule_id}/pause", pause),
    Post("/schedules/{schedule_id}/resume", resume),
    Post("/schedules/{schedule_id}/trigger", trigger),
]
