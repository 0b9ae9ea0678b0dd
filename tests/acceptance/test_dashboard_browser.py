"""The dashboard in a real browser: Debian's chromium driven by Playwright against a real
``serve`` (issue 17). Skips without chromium locally, fails under ``CI=true``.

The server runs with ``MCPEXEC_SANDBOX=none`` so that a run can wait for a file the test
creates (a bubblewrap sandbox would not see the test's directory): the log-follow test lets the
run go on by creating that file, no sleeps.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser as Chromium
from playwright.sync_api import ConsoleMessage, Dialog, Page, expect, sync_playwright

from mcpexec.client import Client
from servers import executable

from .conftest import Server, make_server, sleeper, wait_until_gone

SHOTS = Path(__file__).resolve().parents[2] / ".ci" / "out" / "dashboard"
WAIT_MS = 20_000
XSS_LABEL = '<script>window.__xss=1</script>"><img src=x onerror="window.__xss=2">'


@dataclass
class Browser:
    server: Server
    browser: Chromium
    #: Every console message and dialog of every page (a script that ran would leave one).
    console: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning", "log", "info"):  # not chromium's own hints
            self.console.append(f"{message.type}: {message.text}")

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def page(self, token: str, width: int = 1440, height: int = 900, *, dark: bool = False) -> Page:
        context = self.browser.new_context(
            viewport={"width": width, "height": height},
            color_scheme="dark" if dark else "light",
        )
        page = context.new_page()
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        page.on("dialog", self._dialog)
        page.set_default_timeout(WAIT_MS)
        page.goto(f"{self.server.url}/ui/")
        assert page.url.endswith("/ui/login?next=/ui/")
        page.get_by_label("Token").fill(token)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{self.server.url}/ui/")
        return page


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    chromium = executable("chromium", "TEST_CHROMIUM")
    srv = make_server(tmp_path_factory.mktemp("ui"), workers=4, MCPEXEC_SANDBOX="none")
    srv.start()
    try:
        with sync_playwright() as p:
            # --no-sandbox: chromium's own sandbox refuses to run as root (CI runs as root)
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            try:
                yield Browser(srv, browser)
            finally:
                browser.close()
    finally:
        srv.stop()


@pytest.fixture
def api(ui: Browser) -> Iterator[Client]:
    with ui.server.client() as client:
        yield client


def test_login_then_a_submitted_run_appears_live_in_the_list(ui: Browser, api: Client) -> None:
    page = ui.page(ui.server.token)
    page.goto(f"{ui.server.url}/ui/runs")
    run = api.submit({"shell": "echo listed", "labels": {"seen": "live"}})
    # no reload: the list's rows update by themselves
    page.locator(f'a[href="/ui/runs/{run["id"]}"]').wait_for()
    assert "seen=live" in page.locator("table.runs").inner_text()
    page.context.close()


def test_the_runs_list_updates_from_the_event_stream(ui: Browser, api: Client) -> None:
    page = ui.page(ui.server.token)
    streams: list[str] = []
    page.on(
        "response",
        lambda r: (
            streams.append(r.headers.get("content-type", "")) if "/ui/events" in r.url else None
        ),
    )
    page.goto(f"{ui.server.url}/ui/runs")
    # The page's EventSource is connected (its "open" message came) before the run exists.
    page.locator('tbody[data-stream="open"]').wait_for(timeout=WAIT_MS)
    run = api.submit({"shell": "echo streamed", "labels": {"seen": "stream"}})
    # Well inside the 30 s safety poll: the row came from the run.submitted event.
    row = page.locator(f'a[href="/ui/runs/{run["id"]}"]')
    row.wait_for(timeout=15_000)
    api.wait(run["id"], 60)
    line = page.locator("table.runs tr", has=row)
    expect(line).to_contain_text("completed", timeout=15_000)
    assert any(kind.startswith("text/event-stream") for kind in streams), streams
    page.context.close()


def test_the_log_tail_follows_while_the_run_prints(
    ui: Browser, api: Client, tmp_path: Path
) -> None:
    go, end = tmp_path / "go", tmp_path / "end"
    script = (
        f"echo first-line; while [ ! -e {go} ]; do sleep 0.05; done; "
        f"echo second-line; while [ ! -e {end} ]; do sleep 0.05; done"
    )
    run = api.submit({"shell": script})
    page = ui.page(ui.server.token)
    page.goto(f"{ui.server.url}/ui/runs/{run['id']}")
    log = page.locator("#log")
    expect(log).to_contain_text("first-line", timeout=WAIT_MS)
    page.evaluate("window.__same_page = true")
    go.touch()
    expect(log).to_contain_text("second-line", timeout=WAIT_MS)
    assert page.evaluate("window.__same_page") is True  # followed, not reloaded
    assert page.locator("#run-status").inner_text() == "running"
    end.touch()
    page.locator("#run-status.completed").wait_for()  # the page reloads once it ends
    assert "first-line\nsecond-line" in log.inner_text()
    page.context.close()


def test_cancel_from_the_run_page_kills_it(ui: Browser, api: Client) -> None:
    marker = "ui-cancel-7d1f"
    run = api.submit({"shell": sleeper(marker)})
    page = ui.page(ui.server.token)
    page.goto(f"{ui.server.url}/ui/runs/{run['id']}")
    page.locator("#run-status.running").wait_for()
    page.get_by_role("button", name="Cancel run").click()
    page.locator("#run-status.cancelled").wait_for()
    assert api.get(run["id"])["status"] == "cancelled"
    assert wait_until_gone(marker, 10) == []
    page.context.close()


def test_a_viewer_sees_no_cancel_and_forged_posts_are_refused(ui: Browser, api: Client) -> None:
    marker = "ui-viewer-2b9c"
    run = api.submit({"shell": sleeper(marker)})
    viewer_token = api.create_token("ui-viewer", role="viewer")["token"]
    url = f"{ui.server.url}/ui/runs/{run['id']}"
    viewer = ui.page(viewer_token)
    viewer.goto(url)
    assert viewer.get_by_role("button", name="Cancel run").count() == 0
    assert viewer.get_by_role("link", name="Workers").count() == 0  # an admin page
    # the viewer's own, valid CSRF token: the ACL refuses (the same rule as the API)
    csrf = viewer.locator('input[name="csrf"]').first.get_attribute("value")
    refused = viewer.request.post(f"{url}/cancel", form={"csrf": csrf or ""})
    assert refused.status == 403
    assert "may cancel only its own runs" in refused.text()
    # an admin's session with a forged or missing CSRF token: refused before anything happens
    admin = ui.page(ui.server.token)
    admin.goto(url)
    assert admin.get_by_role("button", name="Cancel run").count() == 1
    forms: list[dict[str, str | float | bool]] = [{"csrf": "forged"}, {}]
    for form in forms:
        forged = admin.request.post(f"{url}/cancel", form=form)
        assert forged.status == 403
        assert "CSRF" in forged.text()
    # and without any session (a request from elsewhere): no cookie, no action
    bare = httpx.post(f"{url}/cancel", data={"csrf": csrf or ""}, follow_redirects=False)
    assert bare.status_code == 401
    assert api.get(run["id"])["status"] == "running"
    api.cancel(run["id"])
    assert wait_until_gone(marker, 10) == []
    viewer.context.close()
    admin.context.close()


def test_markup_in_labels_and_logs_renders_as_text(ui: Browser, api: Client) -> None:
    before = len(ui.console)
    line = XSS_LABEL.replace("'", "")
    run = api.submit({"shell": f"printf '%s\\n' '{line}'", "labels": {"note": XSS_LABEL}})
    api.wait(run["id"], timeout_s=30)
    page = ui.page(ui.server.token)
    for where in ("/ui/runs", f"/ui/runs/{run['id']}", "/ui/"):
        page.goto(f"{ui.server.url}{where}")
        assert XSS_LABEL in page.locator(".label").first.inner_text()
        assert page.evaluate("window.__xss") is None
        assert page.locator("img").count() == 0
    page.goto(f"{ui.server.url}/ui/runs/{run['id']}")
    assert line in page.locator("#log").inner_text()
    assert page.evaluate("window.__xss") is None
    assert ui.dialogs == []
    assert ui.console[before:] == []  # no script ran, not even one the CSP had to block
    page.context.close()


@pytest.mark.parametrize("width", [375, 1440])
def test_every_page_renders_at_phone_and_desktop_width(
    ui: Browser, api: Client, width: int
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    run = api.submit({"shell": "echo screenshot; echo to-stderr >&2", "labels": {"app": "shots"}})
    api.wait(run["id"], timeout_s=30)
    bearer = {"Authorization": f"Bearer {ui.server.token}"}
    for text in ("echo v1", "echo v2; date"):  # a task with two versions: a diff to show
        task = {"shell": text, "description": "prints its version"}
        defined = httpx.put(f"{ui.server.url}/api/v1/tasks/shot", json=task, headers=bearer)
        assert defined.is_success, defined.text
    schedule = {"task": "shot", "cron": "0 9 * * 1-5", "timezone": "Europe/Paris", "paused": True}
    made = httpx.post(f"{ui.server.url}/api/v1/schedules", json=schedule, headers=bearer)
    assert made.status_code == 201, made.text
    flow = "name: shots\nsteps:\n  build: {shell: 'true'}\n  review: {needs: [build], gate: manual}"
    yaml_body = {**bearer, "Content-Type": "application/yaml"}
    assert httpx.post(f"{ui.server.url}/api/v1/workflows", content=flow, headers=yaml_body)
    started = httpx.post(
        f"{ui.server.url}/api/v1/workflow-runs", json={"workflow": "shots"}, headers=bearer
    )
    workflow_run = started.json()["id"]
    before = len(ui.console)
    page = ui.page(ui.server.token, width=width, height=800)
    pages = ["/ui/login", "/ui/", "/ui/runs", f"/ui/runs/{run['id']}", "/ui/workers",
             "/ui/tasks", "/ui/tasks/shot", "/ui/schedules", "/ui/servers",
             "/ui/servers/tools", "/ui/workflows", f"/ui/workflows/{workflow_run}",
             "/ui/alerts"]  # fmt: skip
    for path in pages:
        page.goto(f"{ui.server.url}{path}")
        assert page.locator("h1").count() == 1
        shown = path.removeprefix("/ui").replace(run["id"], "run").replace(workflow_run, "run")
        name = re.sub(r"[^a-z]+", "-", shown).strip("-")
        page.screenshot(path=str(SHOTS / f"{name or 'overview'}-{width}.png"), full_page=True)
        # nothing wider than the screen (a table scrolls inside its own box)
        overflow = page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= width, f"{path} is {overflow}px wide at {width}px"
        # every input has a label (accessible name)
        unnamed = page.evaluate(
            "[...document.querySelectorAll('input:not([type=hidden]), select')]"
            ".filter(e => !e.labels || e.labels.length === 0).length"
        )
        assert unnamed == 0, path
    assert ui.console[before:] == []
    page.context.close()


def test_dark_mode_follows_the_system_preference(ui: Browser, api: Client) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    backgrounds = []
    for dark in (False, True):
        page = ui.page(ui.server.token, dark=dark)
        page.goto(f"{ui.server.url}/ui/runs")
        backgrounds.append(page.evaluate("getComputedStyle(document.body).backgroundColor"))
        if dark:
            page.screenshot(path=str(SHOTS / "runs-1440-dark.png"), full_page=True)
        page.context.close()
    light, dark_bg = backgrounds
    assert light != dark_bg
    assert dark_bg == "rgb(17, 19, 24)"


def test_schedules_pause_resume_and_trigger_from_the_page(ui: Browser, api: Client) -> None:
    bearer = {"Authorization": f"Bearer {ui.server.token}"}
    with httpx.Client(base_url=ui.server.url, headers=bearer, timeout=30) as http:
        assert http.put("/api/v1/tasks/ui-task", json={"shell": "echo fired"}).is_success
        made = http.post(
            "/api/v1/schedules", json={"task": "ui-task", "every": "1h", "paused": True}
        )
        assert made.status_code == 201, made.text
        schedule_id = made.json()["id"]
    page = ui.page(ui.server.token)
    page.goto(f"{ui.server.url}/ui/schedules")
    row = page.locator("tr", has_text=schedule_id)
    assert "paused" in row.inner_text()
    row.get_by_role("button", name="Resume").click()
    expect(page.locator("tr", has_text=schedule_id)).to_contain_text("active")
    page.locator("tr", has_text=schedule_id).get_by_role("button", name="Pause").click()
    expect(page.locator("tr", has_text=schedule_id)).to_contain_text("paused")
    page.locator("tr", has_text=schedule_id).get_by_role("button", name="Trigger now").click()
    page.wait_for_url(re.compile(r"/ui/runs/[0-9a-f]{32}$"))
    page.locator("#run-status.completed").wait_for()
    assert "fired" in page.locator("#log").inner_text()
    # a viewer sees the schedule, not the buttons
    viewer = ui.page(api.create_token("sched-viewer", role="viewer")["token"])
    viewer.goto(f"{ui.server.url}/ui/schedules")
    assert viewer.locator("tr", has_text=schedule_id).get_by_role("button").count() == 0
    page.context.close()
    viewer.context.close()
