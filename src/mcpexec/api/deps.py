"""Request dependencies: the App and the authenticated principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from mcpexec.app import App, Principal
from mcpexec.bearer import bearer_token


async def get_app(request: Request) -> App:
    # ``async`` on purpose: FastAPI runs a plain ``def`` dependency in a worker thread, one
    # thread hop per request for a dictionary lookup.
    app: App = request.app.state.mcpexec
    return app


async def get_principal(request: Request) -> Principal:
    app = await get_app(request)
    return await app.authenticate(bearer_token(request.headers.get("authorization")))


AppDep = Annotated[App, Depends(get_app)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
