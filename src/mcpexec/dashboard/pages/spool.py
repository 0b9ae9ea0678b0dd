"""The spool (admin): the folders' counts and the jobs in flight of the spool directory this
server watches (``serve --spool DIR``); each job links to its run."""

from __future__ import annotations

from starlette.responses import Response

from mcpexec.dashboard.page import Get, Nav, View

NAV = Nav("Spool", "/spool", 65, admin=True)


async def spool(view: View) -> Response:
    status = await view.app.spool_status(view.principal)
    return view.render("spool.html", title="Spool", spool=status)


ROUTES = [Get("/spool", spool)]
