"""``/api/v1/schedules``: create, list, get, update, delete, pause, resume, trigger, next fire
times, history."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from mcpexec.api.deps import AppDep, PrincipalDep
from mcpexec.schedule_ops import ScheduleChanges, ScheduleRequest, fire_view, schedule_view
from mcpexec.views import run_view

router = APIRouter(prefix="/api/v1/schedules", tags=["schedules"])


@router.post("", status_code=201, summary="Create a schedule of a task")
async def create(body: ScheduleRequest, app: AppDep, principal: PrincipalDep) -> JSONResponse:
    schedule = await app.schedules.create(body, principal)
    headers = {"Location": f"/api/v1/schedules/{schedule.id}"}
    return JSONResponse(schedule_view(schedule), status_code=201, headers=headers)


@router.get("", summary="Every schedule (of the caller's tenant; admins: all)")
async def list_schedules(app: AppDep, principal: PrincipalDep) -> dict[str, Any]:
    return {"schedules": [schedule_view(s) for s in await app.schedules.list_schedules(principal)]}


@router.get("/{schedule_id}", summary="A schedule and its status")
async def get(schedule_id: str, app: AppDep, principal: PrincipalDep) -> dict[str, Any]:
    return schedule_view(await app.schedules.get(schedule_id, principal))


@router.patch("/{schedule_id}", summary="Change cron/every, zone, policies or params (at once)")
async def update(
    schedule_id: str,
    app: AppDep,
    principal: PrincipalDep,
    changes: ScheduleChanges,
) -> dict[str, Any]:
    return schedule_view(await app.schedules.update(schedule_id, changes.given(), principal))


@router.delete("/{schedule_id}", status_code=204, summary="Delete (its runs stay)")
async def delete(schedule_id: str, app: AppDep, principal: PrincipalDep) -> Response:
    await app.schedules.delete(schedule_id, principal)
    return Response(status_code=204)


@router.post("/{schedule_id}/pause", summary="Pause: no fires, none counted missed")
async def pause(schedule_id: str, app: AppDep, principal: PrincipalDep) -> dict[str, Any]:
    return schedule_view(await app.schedules.pause(schedule_id, principal))


@router.post("/{schedule_id}/resume", summary="Resume: fires from now on")
async def resume(schedule_id: str, app: AppDep, principal: PrincipalDep) -> dict[str, Any]:
    return schedule_view(await app.schedules.resume(schedule_id, principal))


@router.post("/{schedule_id}/trigger", status_code=202, summary="Fire now (a manual run)")
async def trigger(
    schedule_id: str, request: Request, app: AppDep, principal: PrincipalDep
) -> dict[str, Any]:
    run = await app.schedules.trigger(schedule_id, principal)
    return run_view(run, str(request.base_url).rstrip("/"))


@router.get("/{schedule_id}/next", summary="The next n fire times, in the schedule's zone")
async def next_fires(
    schedule_id: str,
    app: AppDep,
    principal: PrincipalDep,
    n: Annotated[int, Query(ge=1, le=100)] = 5,
) -> dict[str, Any]:
    schedule = await app.schedules.get(schedule_id, principal)
    times = await app.schedules.next(schedule_id, n, principal)
    return {"timezone": schedule.spec.timezone, "next": [t.isoformat() for t in times]}


@router.get("/{schedule_id}/history", summary="Every fire: time, outcome, run, status, duration")
async def history(
    schedule_id: str,
    app: AppDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    lines = await app.schedules.history(schedule_id, principal, limit)
    return {"fires": [fire_view(line) for line in lines]}
