"""Workflows: recent workflow runs; one run's step graph with each step's state, checkpoint
and run, its events, and the manual actions (approve, pause/resume, skip, retry, rollback,
mark done, cancel) where the caller may take them."""

from __future__ import annotations

from starlette.responses import Response

from mcpexec.dashboard.format import pretty, when
from mcpexec.dashboard.page import Column, Get, Nav, Post, View
from mcpexec.tenancy import Action
from mcpexec.workflows.ops import event_view, run_view, step_actions
from mcpexec.workflows.state import ACTIVE, StepStatus, WorkflowStatus

NAV = Nav("Workflows", "/workflows", 35)
COLUMNS = [
    Column("Run", mono=True, link="href"),
    Column("Workflow"),
    Column("Status"),
    Column("Steps done"),
    Column("Tenant"),
    Column("Created"),
]
_LABELS = {"mark_done": "Mark done", "rollback": "Roll back to here"}
_DONE = frozenset({StepStatus.COMPLETED, StepStatus.SKIPPED})
EVENTS_SHOWN = 100


async def workflow_runs(view: View) -> Response:
    rows = []
    for rec in await view.app.workflows.list_runs(view.principal, limit=200):
        steps = rec.state.get("steps", {})
        done = sum(1 for s in steps.values() if s.get("status") in _DONE)
        rows.append(
            {
                "Run": rec.id[:12],
                "href": f"/ui/workflows/{rec.id}",
                "Workflow": f"{rec.workflow} v{rec.version}",
                "Status": rec.status,
                "Steps done": f"{done} of {len(steps)}",
                "Tenant": rec.tenant,
                "Created": when(rec.created_at),
            }
        )
    intro = "Start one with `mcpexec workflows start NAME` or POST /api/v1/workflow-runs."
    return view.table("Workflows", COLUMNS, rows, empty="No workflow run yet.", intro=intro)


async def workflow_run(view: View) -> Response:
    rec = await view.app.workflows.get_run(view.param("run_id"), view.principal)
    definition = await view.app.workflows.definition_of(rec)
    shown = run_view(rec)
    active = WorkflowStatus(rec.status) in ACTIVE
    may_act = view.can(Action.CANCEL, tenant=rec.tenant, owner=rec.owner)
    steps = []
    for name in definition.order():
        step, st = definition.steps[name], shown["steps"][name]
        status = StepStatus(st["status"])
        actions = []
        if may_act and (active or status is StepStatus.FAILED):
            actions = [
                (action, _LABELS.get(action, action.capitalize()))
                for action in step_actions(status)
            ]
        steps.append(
            {
                "name": name,
                "kind": step.kind,
                "needs": step.needs,
                "status": status.value,
                "run_id": st.get("run_id"),
                "runs": st.get("runs", []),
                "error": st.get("error"),
                "checkpoint": None if st.get("checkpoint") is None else pretty(st["checkpoint"]),
                "checkpoint_file": step.checkpoint.file if step.checkpoint else None,
                "started_at": st.get("started_at"),
                "finished_at": st.get("finished_at"),
                "actions": actions,
            }
        )
    run_actions = []
    if may_act and active:
        run_actions.append(("resume", "Resume") if shown["paused"] else ("pause", "Pause"))
        run_actions.append(("cancel", "Cancel workflow run"))
    events = await view.app.workflows.events(rec.id, view.principal, limit=5000)
    return view.render(
        "workflow.html",
        title=f"Workflow run {rec.id}",
        run=shown,
        steps=steps,
        run_actions=run_actions,
        events=[event_view(e) for e in events[-EVENTS_SHOWN:]][::-1],
        events_total=len(events),
    )


async def act(view: View) -> Response:
    run_id, action = view.param("run_id"), view.param("action").replace("-", "_")
    step = view.form.get("step") or None
    await view.app.workflows.act(run_id, action, view.principal, step)
    return view.redirect(f"/ui/workflows/{run_id}")


ROUTES = [
    Get("/workflows", workflow_runs),
    Get("/workflows/{run_id}", workflow_run),
    Post("/workflows/{run_id}/{action}", act),
]
