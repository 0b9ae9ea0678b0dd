"""``/health`` (no auth: for load balancers), ``/metrics`` (Prometheus), stats and workers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from mcpexec import __version__
from mcpexec.api.deps import AppDep, PrincipalDep, get_principal
from mcpexec.history import MAX_HISTORY_HOURS, HistoryPoint
from mcpexec.models import RunStatus

router = APIRouter()


@router.get("/health", tags=["admin"], summary="Liveness: the server process answers")
async def health(app: AppDep) -> dict[str, Any]:
    # Liveness only: the store is not queried (a load balancer's probe must stay cheap and must
    # not queue behind the store's writes); a failing store shows in every other endpoint (503).
    slots = app.worker_slots()
    return {
        "status": "ok",
        "version": __version__,
        "isolation": app.isolation,
        "worker_slots": slots.total,
        "running": slots.busy,
    }


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, app: AppDep) -> Response:
    """Prometheus metrics (docs/observability.md): an admin token, unless ``metrics_public``."""
    principal = None if app.settings.metrics_public else await get_principal(request)
    body = await app.metrics_exposition(principal)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/api/v1/stats", tags=["admin"], summary="Run counts by status")
async def stats(app: AppDep, principal: PrincipalDep) -> dict[str, Any]:
    counts = (await app.stats(principal)).by_status
    return {"runs": {s.value: counts.get(s.value, 0) for s in RunStatus}}


@router.get(
    "/api/v1/stats/history",
    tags=["admin"],
    summary="Runs finished per hour, success rate, p50/p95 duration and queue wait",
)
async def stats_history(
    app: AppDep,
    principal: PrincipalDep,
    hours: Annotated[int, Query(ge=1, le=MAX_HISTORY_HOURS, description="hours back")] = 24,
) -> dict[str, Any]:
    points = await app.run_history(principal, hours)
    return {"hours": [history_view(p) for p in points]}


@router.get("/api/v1/workers", tags=["admin"], summary="Registered workers (admin)")
async def workers(app: AppDep, principal: PrincipalDep) -> dict[str, Any]:
    items = await app.list_workers(principal)
    return {
        "workers": [
            {
                "id": w.id,
                "hostname": w.hostname,
                "pid": w.pid,
                "concurrency": w.concurrency,
                "running": w.running,
                "labels": list(w.labels),
                "started_at": w.started_at.isoformat(),
                "heartbeat_at": w.heartbeat_at.isoformat(),
            }
            for w in items
        ]
    }


def history_view(point: HistoryPoint) -> dict[str, Any]:
    return {
        "hour": point.hour.isoformat(),
        "finished": point.finished,
        "completed": point.completed,
        "failed": point.failed,
        "cancelled": point.cancelled,
        "success_rate": point.success_rate,
        "duration_p50_s": point.duration_p50_s,
        "duration_p95_s": point.duration_p95_s,
        "wait_p50_s": point.wait_p50_s,
        "wait_p95_s": point.wait_p95_s,
    }
