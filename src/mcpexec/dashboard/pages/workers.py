"""Workers registered in the store (admin), with their heartbeats."""

from __future__ import annotations

from starlette.responses import Response

from mcpexec.dashboard.format import when
from mcpexec.dashboard.page import Column, Get, Nav, View
from mcpexec.models import utcnow

NAV = Nav("Workers", "/workers", 50, admin=True)
COLUMNS = [
    Column("Worker", mono=True),
    Column("Host"),
    Column("Labels"),
    Column("PID"),
    Column("Running"),
    Column("Slots"),
    Column("Started"),
    Column("Last heartbeat"),
]


async def workers(view: View) -> Response:
    now = utcnow()
    rows = [
        {
            "Worker": w.id,
            "Host": w.hostname,
            "Labels": ", ".join(w.labels) or "—",
            "PID": w.pid,
            "Running": w.running,
            "Slots": w.concurrency,
            "Started": when(w.started_at),
            "Last heartbeat": f"{(now - w.heartbeat_at).total_seconds():.0f} s ago",
        }
        for w in await view.app.list_workers(view.principal)
    ]
    return view.table("Workers", COLUMNS, rows, empty="No worker is registered.")


ROUTES = [Get("/workers", workers)]
