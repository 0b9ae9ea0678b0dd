"""``/health`` (no auth: for load balancers), ``/metrics`` (Prometheus), stats and workers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from mcpexec import __version__
from mcpexec.api.deps import AppDep, PrincipalDep
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


@router.get("/metrics", tags=["admin"], summary="Prometheus metrics")
async def metrics(app: AppDep, principal: PrincipalDep) -> Response:
    stats = await app.stats(principal)
    workers = await app.list_workers(principal) if principal.is_admin else []
    registry = CollectorRegistry()
    runs = Gauge("mcpexec_runs", "Runs in the store by status", ["status"], registry=registry)
    for status in RunStatus:
        runs.labels(status.value).set(stats.by_status.get(status.value, 0))
    Gauge("mcpexec_workers", "Registered workers", registry=registry).set(len(workers))
    in_process = app.worker_slots()
    slots = Gauge("mcpexec_worker_slots", "Worker slots in this process", registry=registry)
    slots.set(in_process.total)
    busy = Gauge("mcpexec_worker_busy", "Busy worker slots in this process", registry=registry)
    busy.set(in_process.busy)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/v1/stats", tags=["admin"], summary="Run counts by status")
async def stats(app: AppDep, principal: PrincipalDep) -> dict[str, Any]:
    counts = (await app.stats(principal)).by_status
    return {"runs": {s.value: counts.get(s.value, 0) for s in RunStatus}}


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
                "started_at": w.started_at.isoformat(),
                "heartbeat_at": w.heartbeat_at.isoformat(),
            }
            for w in items
        ]
    }
