"""What a dashboard page is: routes, an entry in the navigation, and the ``View`` a handler
gets (docs/dashboard.md, "Adding a page").

A page is one module in ``mcpexec/dashboard/pages/`` that defines ``ROUTES`` (a list of
``Get``/``Post``) and optionally ``NAV`` (its place in the navigation). A list page needs no
template of its own: ``View.table`` renders the generic ``table.html``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from mcpexec.app import App, Principal
from mcpexec.dashboard.session import Sessions
from mcpexec.models import Run
from mcpexec.tenancy import Action, Decision, decide

Handler = Callable[["View"], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Get:
    path: str
    handler: Handler


@dataclass(frozen=True, slots=True)
class Post:
    """A state-changing action: the CSRF token is checked before ``handler`` runs."""

    path: str
    handler: Handler


@dataclass(frozen=True, slots=True)
class Nav:
    title: str
    path: str
    #: Position in the navigation (ascending).
    order: int
    #: Shown to admins only (the page itself refuses others anyway).
    admin: bool = False


@dataclass(frozen=True, slots=True)
class Column:
    title: str
    #: Render the cell as a link to this key's value in the row (``"href"``) when set.
    link: str | None = None
    mono: bool = False
    #: The cell is a list of ``Button``: one POST form each (with the CSRF token).
    actions: bool = False


@dataclass(frozen=True, slots=True)
class Button:
    """A POST button of a table row (``Column(actions=True)``)."""

    label: str
    path: str
    danger: bool = False


@dataclass(frozen=True, slots=True)
class Ui:
    """What every view shares: the App, the templates, the sessions, the navigation."""

    app: App
    env: Environment
    sessions: Sessions
    nav: Sequence[Nav]


@dataclass
class View:
    """One request to a page, authenticated."""

    request: Request
    ui: Ui
    principal: Principal
    #: The session cookie (the CSRF token is derived from it).
    cookie: str
    form: Mapping[str, str] = field(default_factory=dict)

    @property
    def app(self) -> App:
        return self.ui.app

    @property
    def csrf(self) -> str:
        return self.ui.sessions.csrf_for(self.cookie)

    def param(self, name: str) -> str:
        return self.request.path_params.get(name) or self.request.query_params.get(name, "")

    def can(
        self,
        action: Action,
        run: Run | None = None,
        *,
        tenant: str | None = None,
        owner: str | None = None,
    ) -> bool:
        """Whether the role may do ``action`` (on ``run``, or on a resource of ``tenant`` and
        ``owner``): the API's own rule, for showing a button; the App checks again when the
        action arrives."""
        if run is not None:
            tenant, owner = run.tenant, run.owner
        return decide(self.principal.actor, action, tenant, owner) is Decision.ALLOW

    def render(self, template: str, *, title: str, status: int = 200, **context: Any) -> Response:
        page = self.ui.env.get_template(template).render(
            title=title,
            principal=self.principal,
            csrf=self.csrf,
            nav=self.ui.nav,
            active=_active(self.ui.nav, self.request.url.path),
            **context,
        )
        return HTMLResponse(page, status)

    def table(
        self,
        title: str,
        columns: Sequence[Column],
        rows: Sequence[Mapping[str, Any]],
        *,
        empty: str = "Nothing here yet.",
        intro: str | None = None,
    ) -> Response:
        """A list page: ``rows`` map each column's title to its cell (text, escaped)."""
        return self.render(
            "table.html", title=title, columns=columns, rows=rows, empty=empty, intro=intro
        )

    @staticmethod
    def redirect(path: str) -> Response:
        return RedirectResponse(path, status_code=303)


def _active(nav: Sequence[Nav], path: str) -> str:
    best = ""
    for item in nav:
        full = "/ui" + item.path
        if (path == full or path.startswith(full.rstrip("/") + "/")) and len(item.path) > len(best):
            best = item.path
    return best
