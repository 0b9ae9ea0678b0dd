"""The dashboard at ``/ui``: server-rendered pages over the App, like the REST API.

``create_dashboard(app)`` is a Starlette app (mounted at ``/ui`` by ``mcpexec.asgi``). Its
pages are the modules of ``mcpexec.dashboard.pages`` (``page.py`` says what a page is). Every
response carries a strict Content-Security-Policy (scripts and styles from ``/ui/static`` only,
no inline script); templates are autoescaped, so a run's labels and logs render as text.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from urllib.parse import parse_qsl, quote

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcpexec.app import App
from mcpexec.dashboard import pages
from mcpexec.dashboard.format import install as install_filters
from mcpexec.dashboard.page import Get, Handler, Nav, Post, Ui, View
from mcpexec.dashboard.session import COOKIE, LOGIN_COOKIE, Sessions
from mcpexec.errors import McpexecError, Unauthorized

STATIC = Path(__file__).parent / "static"
Endpoint = Callable[[Request], Awaitable[Response]]
#: No inline script or style, nothing from another origin, no framing, forms post here only.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
#: Form bodies of the dashboard are small (a token, a CSRF token, an id).
MAX_FORM_BYTES = 16 * 1024


def create_dashboard(app: App) -> ASGIApp:
    env = Environment(
        loader=PackageLoader("mcpexec.dashboard", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    install_filters(env)
    https = (app.settings.public_url or "").startswith("https://")
    routes, nav = _discover()
    ui = Ui(app=app, env=env, sessions=Sessions(app.session_key(), https=https), nav=nav)
    starlette_routes: list[BaseRoute] = [
        Route("/login", _login_form(ui), methods=["GET"]),
        Route("/login", _login(ui), methods=["POST"]),
        Route("/logout", _logout(ui), methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=STATIC)),
    ]
    for route in routes:
        post = isinstance(route, Post)
        endpoint = _authenticated(ui, route.handler, post=post)
        starlette_routes.append(Route(route.path, endpoint, methods=["POST" if post else "GET"]))
    return _SecurityHeaders(Starlette(routes=starlette_routes))


def dashboard_routes(app: App) -> list[BaseRoute]:
    """The routes ``serve`` adds to its ASGI app: the dashboard at ``/ui``."""

    async def to_slash(_: Request) -> Response:
        return RedirectResponse("/ui/", status_code=307)

    return [Route("/ui", to_slash), Mount("/ui", app=create_dashboard(app))]


def _discover() -> tuple[list[Get | Post], list[Nav]]:
    """Every page module's ``ROUTES`` and ``NAV`` (a new page is one new module)."""
    routes: list[Get | Post] = []
    nav: list[Nav] = []
    for info in sorted(pkgutil.iter_modules(pages.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{pages.__name__}.{info.name}")
        routes.extend(getattr(module, "ROUTES", ()))
        entry = getattr(module, "NAV", None)
        if entry is not None:
            nav.append(entry)
    return routes, sorted(nav, key=lambda n: n.order)


class _SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form body (the only kind the dashboard posts), bounded."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise _Refused(413, "the form is too large")
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error_page(ui: Ui, status: int, message: str, code: str = "") -> Response:
    html = ui.env.get_template("error.html").render(
        title=f"Error {status}", status=status, message=message, code=code, nav=(), principal=None
    )
    return HTMLResponse(html, status)


def _authenticated(ui: Ui, handler: Handler, *, post: bool) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        cookie = request.cookies.get(COOKIE, "")
        token_hash = ui.sessions.token_hash(cookie)
        if token_hash is None:
            if post or request.headers.get("x-mcpexec-fragment"):
                return _error_page(ui, 401, "Your session ended: log in again.", "unauthorized")
            target = quote(request.url.path, safe="/")  # a decoded path may hold CR/LF
            return RedirectResponse(f"/ui/login?next={target}", status_code=303)
        try:
            principal = await ui.app.authenticate_session(token_hash)
            form: dict[str, str] = {}
            if post:
                form = await _form(request)
                if not ui.sessions.csrf_ok(cookie, form.get("csrf")):
                    raise _Refused(403, "The form's CSRF token is missing or wrong: reload.")
            view = View(request, ui, principal, cookie, form)
            return await handler(view)
        except Unauthorized:
            response = RedirectResponse("/ui/login", status_code=303)
            response.delete_cookie(COOKIE, path="/ui")
            return response
        except _Refused as refused:
            return _error_page(ui, refused.status, refused.message, "csrf")
        except McpexecError as exc:
            return _error_page(ui, exc.http_status, exc.message, exc.code)

    return endpoint


def _login_form(ui: Ui) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        return _login_page(ui, request, None, 200)

    return endpoint


def _login_page(ui: Ui, request: Request, error: str | None, status: int) -> Response:
    nonce = ui.sessions.login_nonce()
    html = ui.env.get_template("login.html").render(
        title="Log in",
        nonce=nonce,
        error=error,
        next=_safe_next(request.query_params.get("next", "")),
        nav=(),
        principal=None,
    )
    response = HTMLResponse(html, status)
    ui.sessions.set_cookie(response, request, LOGIN_COOKIE, nonce)
    return response


def _login(ui: Ui) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        try:
            form = await _form(request)
        except _Refused as refused:
            return _error_page(ui, refused.status, refused.message)
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if not nonce or form.get("nonce") != nonce:
            return _login_page(ui, request, "The login form expired: try again.", 403)
        token = form.get("token", "").strip()
        try:
            await ui.app.authenticate(token)
        except Unauthorized as exc:
            return _login_page(ui, request, exc.message, 401)
        response = RedirectResponse(_safe_next(form.get("next", "")) or "/ui/", status_code=303)
        ui.sessions.set_cookie(response, request, COOKIE, ui.sessions.cookie_for(token))
        response.delete_cookie(LOGIN_COOKIE, path="/ui")
        return response

    return endpoint


def _logout(ui: Ui) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        cookie = request.cookies.get(COOKIE, "")
        try:
            form = await _form(request)
        except _Refused as refused:
            return _error_page(ui, refused.status, refused.message)
        if not ui.sessions.csrf_ok(cookie, form.get("csrf")):
            return _error_page(ui, 403, "The form's CSRF token is missing or wrong.", "csrf")
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(COOKIE, path="/ui")
        return response

    return endpoint


def _safe_next(path: str) -> str:
    """Only a path of the dashboard (no open redirect to another site)."""
    if not path.startswith("/ui/") or "\\" in path or not path.isprintable() or " " in path:
        return ""  # another site, or a control character (a header injection)
    return path


__all__: Sequence[str] = ("create_dashboard", "dashboard_routes")
