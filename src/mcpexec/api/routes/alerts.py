"""``GET /api/v1/alerts``: the states of the alert rules (issue 17, docs/observability.md)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from mcpexec.api.deps import AppDep, PrincipalDep

router = APIRouter()


@router.get(
    "/api/v1/alerts",
    tags=["admin"],
    summary="Alert states (firing first); an admin sees all, others their tenant's",
)
async def list_alerts(
    app: AppDep,
    principal: PrincipalDep,
    state: Annotated[
        Literal["firing", "resolved"] | None, Query(description="only alerts in this state")
    ] = None,
) -> dict[str, Any]:
    alerts = await app.alerts.list_alerts(principal)
    if state is not None:
        alerts = [a for a in alerts if a["state"] == state]
    return {"alerts": alerts, "firing": sum(a["state"] == "firing" for a in alerts)}
