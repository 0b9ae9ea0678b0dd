"""Alert states (issue 17): firing first, then resolved; the same ``App.alerts.list_alerts`` as
``GET /api/v1/alerts`` (an admin sees every alert, others their tenant's)."""

from __future__ import annotations

from starlette.responses import Response

from mcpexec.dashboard.format import when
from mcpexec.dashboard.page import Column, Get, Nav, View

NAV = Nav("Alerts", "/alerts", 70)
COLUMNS = [
    Column("State"),
    Column("Rule", mono=True),
    Column("Subject", mono=True),
    Column("Tenant"),
    Column("Message"),
    Column("Fired"),
    Column("Resolved"),
]


async def alerts(view: View) -> Response:
    found = await view.app.alerts.list_alerts(view.principal)
    rows = [
        {
            "State": a["state"].upper() if a["state"] == "firing" else a["state"],
            "Rule": a["rule"],
            "Subject": a["subject"] or "—",
            "Tenant": a["tenant"] or "—",
            "Message": a["message"],
            "Fired": when(a["fired_at"]),
            "Resolved": when(a["resolved_at"]),
        }
        for a in found
    ]
    firing = sum(a["state"] == "firing" for a in found)
    rules = len(view.app.alerts.rules)
    intro = f"{firing} firing. {rules} rule(s) configured (alerts in the config file)."
    return view.table("Alerts", COLUMNS, rows, empty="No alert has fired.", intro=intro)


ROUTES = [Get("/alerts", alerts)]
