"""Tasks: the latest version of each defined task."""

from __future__ import annotations

from starlette.responses import Response

from mcpexec.dashboard.format import when
from mcpexec.dashboard.page import Column, Get, Nav, View

NAV = Nav("Tasks", "/tasks", 30)
COLUMNS = [
    Column("Task", link="runs_href"),
    Column("Version"),
    Column("Tenant"),
    Column("Description"),
    Column("Defined"),
    Column("Hash", mono=True),
]


async def tasks(view: View) -> Response:
    rows = [
        {
            "Task": t.name,
            "runs_href": f"/ui/runs?task={t.name}",
            "Version": t.version,
            "Tenant": t.tenant,
            "Description": t.definition.description or "",
            "Defined": when(t.created_at),
            "Hash": t.content_hash[:12],
        }
        for t in await view.app.tasks.list_tasks(view.principal)
    ]
    intro = "Define tasks with `mcpexec tasks define FILE` or PUT /api/v1/tasks/{name}."
    return view.table("Tasks", COLUMNS, rows, empty="No task is defined.", intro=intro)


ROUTES = [Get("/tasks", tasks)]
