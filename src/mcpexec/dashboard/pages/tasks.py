"""Tasks: the latest version of each defined task; one task's versions, YAML and last diff."""

from __future__ import annotations

from urllib.parse import quote

from starlette.responses import Response

from mcpexec.dashboard.format import when
from mcpexec.dashboard.page import Column, Get, Nav, View
from mcpexec.definitions import task_view

NAV = Nav("Tasks", "/tasks", 30)
COLUMNS = [
    Column("Task", link="href"),
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
            "href": f"/ui/tasks/{quote(t.name, safe='')}",
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


async def task(view: View) -> Response:
    name = view.param("name")
    versions = await view.app.tasks.versions(name, view.principal)
    latest = max(versions, key=lambda v: v.version)
    diff: list[str] = []
    if latest.version > 1:
        diff = await view.app.tasks.diff(name, latest.version - 1, latest.version, view.principal)
    return view.render(
        "task.html",
        title=f"Task {name}",
        name=name,
        latest=task_view(latest),
        versions=sorted(versions, key=lambda v: -v.version),
        diff=diff,
        runs_href=f"/ui/runs?task={quote(name, safe='')}",
    )


ROUTES = [Get("/tasks", tasks), Get("/tasks/{name}", task)]
