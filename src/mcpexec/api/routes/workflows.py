"""``/api/v1/workflows`` (define, list, versions) and ``/api/v1/workflow-runs`` (start, get,
list, events, cancel and the manual actions) (issue 16)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from mcpexec.api.deps import AppDep, PrincipalDep
from mcpexec.api.routes.tasks import MAX_VERSION, _inline
from mcpexec.errors import InvalidRequest
from mcpexec.models import TASK_NAME_PATTERN, JsonObject
from mcpexec.workflows.ops import event_view, run_view, workflow_view
from mcpexec.workflows.spec import STEP_NAME, WorkflowDefinition
from mcpexec.workflows.state import WorkflowStatus

router = APIRouter(tags=["workflows"])

WorkflowName = Annotated[str, PathParam(pattern=TASK_NAME_PATTERN, max_length=64)]
RunId = Annotated[str, PathParam(pattern="^[0-9a-f]{32}$")]
STEP_PATTERN = "^" + STEP_NAME.pattern + "$"
WORKFLOW_REF = TASK_NAME_PATTERN.removesuffix("$") + "(?:@[1-9][0-9]{0,17})?$"


class Action(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    APPROVE = "approve"
    SKIP = "skip"
    RETRY = "retry"
    ROLLBACK = "rollback"
    MARK_DONE = "mark-done"
    CANCEL = "cancel"


class StartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    workflow: str = Field(pattern=WORKFLOW_REF, max_length=84, description="NAME or NAME@VERSION")
    params: JsonObject = Field(default_factory=dict)


class ActionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    step: str | None = Field(default=None, pattern=STEP_PATTERN, max_length=64)


def _definition_body() -> dict[str, Any]:
    schema = WorkflowDefinition.model_json_schema(by_alias=True)
    schema = _inline(schema, schema.get("$defs", {}))
    kinds = ("application/json", "application/yaml")
    return {"requestBody": {"required": True, "content": {k: {"schema": schema} for k in kinds}}}


@router.post(
    "/api/v1/workflows",
    summary="Define a workflow (YAML or JSON body): a new version when the content changed",
    openapi_extra=_definition_body(),
    responses={201: {"description": "A new version"}},
)
async def define(request: Request, app: AppDep, principal: PrincipalDep) -> JSONResponse:
    try:
        text = (await request.body()).decode()
    except UnicodeDecodeError:
        raise InvalidRequest("the definition is not UTF-8 text", field="body") from None
    record, created = await app.workflows.define(text, principal, source="body")
    body = {**workflow_view(record), "created": created}
    headers = {"Location": f"/api/v1/workflows/{record.name}/versions/{record.version}"}
    return JSONResponse(body, status_code=201 if created else 200, headers=headers)


@router.get("/api/v1/workflows", summary="The latest version of every workflow")
async def list_workflows(app: AppDep, principal: PrincipalDep) -> dict[str, Any]:
    found = await app.workflows.list_workflows(principal)
    return {"workflows": [workflow_view(r) for r in found]}


@router.get("/api/v1/workflows/{name}", summary="A workflow's latest version")
async def get_workflow(name: WorkflowName, app: AppDep, principal: PrincipalDep) -> dict[str, Any]:
    return workflow_view(await app.workflows.get(name, principal))


@router.get("/api/v1/workflows/{name}/versions", summary="Every version, oldest first")
async def versions(name: WorkflowName, app: AppDep, principal: PrincipalDep) -> dict[str, Any]:
    found = await app.workflows.versions(name, principal)
    return {"versions": [workflow_view(r) for r in found]}


@router.get("/api/v1/workflows/{name}/versions/{version}", summary="One version")
async def version(
    name: WorkflowName,
    version: Annotated[int, PathParam(ge=1, le=MAX_VERSION)],
    app: AppDep,
    principal: PrincipalDep,
) -> dict[str, Any]:
    return workflow_view(await app.workflows.get(f"{name}@{version}", principal))


@router.post("/api/v1/workflow-runs", status_code=201, summary="Start a workflow run")
async def start(body: StartRequest, app: AppDep, principal: PrincipalDep) -> JSONResponse:
    rec = await app.workflows.start(body.workflow, body.params, principal)
    headers = {"Location": f"/api/v1/workflow-runs/{rec.id}"}
    return JSONResponse(run_view(rec), status_code=201, headers=headers)


@router.get("/api/v1/workflow-runs", summary="Workflow runs, newest first")
async def list_runs(
    app: AppDep,
    principal: PrincipalDep,
    workflow: Annotated[str | None, Query(pattern=TASK_NAME_PATTERN, max_length=64)] = None,
    status: Annotated[list[WorkflowStatus] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    statuses = frozenset(s.value for s in status or ())
    found = await app.workflows.list_runs(
        principal, workflow=workflow, statuses=statuses, limit=limit
    )
    return {"workflow_runs": [run_view(r) for r in found]}


@router.get("/api/v1/workflow-runs/{run_id}", summary="A workflow run: status, steps, checkpoints")
async def get_run(run_id: RunId, app: AppDep, principal: PrincipalDep) -> dict[str, Any]:
    return run_view(await app.workflows.get_run(run_id, principal))


@router.get("/api/v1/workflow-runs/{run_id}/events", summary="The run's events, oldest first")
async def events(
    run_id: RunId,
    app: AppDep,
    principal: PrincipalDep,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> dict[str, Any]:
    found = await app.workflows.events(run_id, principal, after, limit)
    return {"events": [event_view(e) for e in found]}


@router.delete("/api/v1/workflow-runs/{run_id}", summary="Cancel a workflow run")
async def cancel(run_id: RunId, app: AppDep, principal: PrincipalDep) -> dict[str, Any]:
    return run_view(await app.workflows.act(run_id, "cancel", principal))


class StepRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    step: str = Field(pattern=STEP_PATTERN, max_length=64)


#: The actions on one step (its name is required) and those on the whole run (no body).
STEP_ACTIONS = {Action.SKIP, Action.RETRY, Action.ROLLBACK, Action.MARK_DONE}
RUN_ACTIONS = {Action.PAUSE, Action.RESUME, Action.CANCEL}


def _action_route(action: Action) -> None:
    """``POST /api/v1/workflow-runs/{run_id}/<action>`` (one route each: a path the document
    names exactly, so another method or suffix is a 405/404, not a 422). A step action takes
    ``{"step": NAME}``; ``approve`` may name its gate; the run actions take no body."""

    async def run_action(run_id: RunId, app: AppDep, principal: PrincipalDep) -> dict[str, Any]:
        return run_view(await app.workflows.act(run_id, action.value, principal))

    async def step_action(
        run_id: RunId, body: StepRequest, app: AppDep, principal: PrincipalDep
    ) -> dict[str, Any]:
        return run_view(await app.workflows.act(run_id, action.value, principal, body.step))

    async def approve(
        run_id: RunId, app: AppDep, principal: PrincipalDep, body: ActionRequest | None = None
    ) -> dict[str, Any]:
        step = body.step if body is not None else None
        return run_view(await app.workflows.act(run_id, action.value, principal, step))

    act: Any = (
        run_action if action in RUN_ACTIONS else step_action if action in STEP_ACTIONS else approve
    )
    act.__name__ = f"workflow_{action.value.replace('-', '_')}"
    router.post(
        f"/api/v1/workflow-runs/{{run_id}}/{action.value}",
        summary=f"Manual action: {action.value}",
    )(act)


for _action in Action:
    _action_route(_action)
