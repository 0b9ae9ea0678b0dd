"""The dashboard over plain HTTP on a real ``serve``: sessions, filters, paging, headers,
downloads (the browser tests in test_dashboard_browser.py cover what needs a browser)."""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from mcpexec.client import Client

from .conftest import Server

RUN_LINK = re.compile(r'href="/ui/runs/([0-9a-f]{32})"')


@contextlib.contextmanager
def login(server: Server, token: str) -> Iterator[httpx.Client]:
    """An HTTP client holding a dashboard session of ``token``."""
    with httpx.Client(base_url=server.url, timeout=30) as http:
        form = http.get("/ui/login")
        nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
        assert nonce is not None
        answer = http.post("/ui/login", data={"token": token, "nonce": nonce.group(1)})
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == "/ui/"
        yield http


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


@pytest.fixture
def ui(server: Server) -> Iterator[httpx.Client]:
    with login(server, server.token) as http:
        yield http


def test_pages_need_a_session(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/ui").headers["location"] == "/ui/"
        page = http.get("/ui/runs")
        assert page.status_code == 303
        assert page.headers["location"] == "/ui/login?next=/ui/runs"
        odd = http.get("/ui/runs/a%20b%22%3E%3Cx")  # the path is quoted in ?next=
        assert odd.status_code == 303
        assert odd.headers["location"] == "/ui/login?next=/ui/runs/a%20b%22%3E%3Cx"
        fragment = http.get("/ui/runs/rows", headers={"X-Mcpexec-Fragment": "1"})
        assert fragment.status_code == 401
        # a forged cookie is no session
        http.cookies.set("mcpexec_session", "v1.abc.9999999999.def", path="/ui")
        assert http.get("/ui/runs").status_code == 303


def test_login_refuses_a_bad_token_and_a_form_without_its_nonce(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        form = http.get("/ui/login")
        nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
        assert nonce is not None
        wrong = http.post("/ui/login", data={"token": "nope", "nonce": nonce.group(1)})
        assert wrong.status_code == 401
        assert "unknown or revoked" in wrong.text
        assert "mcpexec_session" not in wrong.cookies
        http.cookies.clear()  # a cross-site form post carries no nonce cookie
        forged = http.post("/ui/login", data={"token": server.token, "nonce": nonce.group(1)})
        assert forged.status_code == 403
        assert "mcpexec_session" not in forged.cookies


def test_the_session_cookie_is_httponly_strict_and_holds_no_token(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        form = http.get("/ui/login")
        nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
        assert nonce is not None
        answer = http.post("/ui/login", data={"token": server.token, "nonce": nonce.group(1)})
    cookie = next(
        v for k, v in answer.headers.multi_items() if k == "set-cookie" and "session" in v
    )
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/ui" in cookie
    assert "Secure" not in cookie  # plain HTTP here; Secure under TLS or an https public_url
    assert server.token not in cookie


def test_revoking_the_token_ends_its_sessions(server: Server, client: Client) -> None:
    made = client.create_token("short-lived", role="viewer")
    with login(server, made["token"]) as http:
        assert http.get("/ui/runs").status_code == 200
        client.revoke_token(made["id"])
        after = http.get("/ui/runs")
        assert after.status_code == 303
        assert after.headers["location"] == "/ui/login"


def test_logout_needs_its_csrf_token_and_drops_the_session(
    server: Server, ui: httpx.Client
) -> None:
    page = ui.get("/ui/").text
    assert ui.post("/ui/logout", data={"csrf": "x"}).status_code == 403
    assert ui.post("/ui/logout", data={"csrf": csrf_of(page)}).status_code == 303
    assert ui.get("/ui/runs").status_code == 303


def test_every_answer_carries_the_security_headers(ui: httpx.Client) -> None:
    for path in ("/ui/", "/ui/runs", "/ui/login", "/ui/static/ui.js", "/ui/runs/nope"):
        answer = ui.get(path)
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "default-src 'none'" in csp
        assert "unsafe-inline" not in csp
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
    assert ui.get("/ui/runs/nope").status_code == 404
    # no inline script anywhere: every <script> has a src of ours
    for path in ("/ui/", "/ui/runs", "/ui/login"):
        scripts = re.findall(r"<script[^>]*>", ui.get(path).text)
        assert scripts == ['<script src="/ui/static/ui.js" defer>'], path


def test_runs_filter_by_status_label_and_time(ui: httpx.Client, client: Client) -> None:
    ok = [client.submit({"shell": "true", "labels": {"team": "a"}}) for _ in range(2)]
    bad = client.submit({"shell": "exit 3", "labels": {"team": "b"}})
    for run in [*ok, bad]:
        client.wait(run["id"], timeout_s=60)

    def listed(**query: str) -> set[str]:
        answer = ui.get("/ui/runs", params=query)
        assert answer.status_code == 200, answer.text
        return set(RUN_LINK.findall(answer.text))

    assert listed(label="team=a") == {r["id"] for r in ok}
    assert listed(status="failed", label="team=b") == {bad["id"]}
    soon = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    assert listed(after=soon) == set()
    assert listed(before=soon, label="team=a") == {r["id"] for r in ok}
    assert "exit_code" in ui.get("/ui/runs", params={"status": "failed"}).text
    for query, message in (
        ({"status": "bogus"}, "not a run status"),
        ({"label": "novalue"}, "KEY=VALUE"),
        ({"after": "yesterday"}, "not a date and time"),
        ({"cursor": "x"}, "cursor"),
    ):
        refused = ui.get("/ui/runs", params=query)
        assert refused.status_code == 422, query
        assert message in refused.text


def test_runs_page_by_cursor(ui: httpx.Client, client: Client) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    made = [
        client.submit({"command": ["true"], "run_at": later, "labels": {"page": "p"}})["id"]
        for _ in range(52)
    ]
    first = ui.get("/ui/runs", params={"label": "page=p"}).text
    assert RUN_LINK.findall(first) == made[::-1][:50]  # newest first
    older = re.search(r'href="(/ui/runs\?[^"]*cursor=[^"]+)">Older', first)
    assert older is not None
    second = ui.get(older.group(1).replace("&amp;", "&")).text
    assert RUN_LINK.findall(second) == made[::-1][50:]
    assert "Older" not in second
    # the live rows are the first page's
    rows = ui.get("/ui/runs/rows", params={"label": "page=p"}).text
    assert RUN_LINK.findall(rows) == made[::-1][:50]


def test_artifacts_are_downloads_never_pages(ui: httpx.Client, client: Client) -> None:
    script = 'printf "<script>alert(1)</script>" > "$MCPEXEC_OUTPUT_DIR/page.html"'
    run = client.submit({"shell": script})
    assert client.wait(run["id"], timeout_s=60)["status"] == "completed"
    page = ui.get(f"/ui/runs/{run['id']}").text
    assert f'href="/ui/runs/{run["id"]}/artifacts/page.html"' in page
    download = ui.get(f"/ui/runs/{run['id']}/artifacts/page.html")
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/octet-stream"
    assert download.headers["content-disposition"].startswith("attachment")
    assert download.content == b"<script>alert(1)</script>"
    assert ui.get(f"/ui/runs/{run['id']}/artifacts/other").status_code == 404


def test_the_log_endpoint_follows_from_offsets(ui: httpx.Client, client: Client) -> None:
    run = client.submit({"shell": "printf 'héllo'; printf 'oops' >&2"})
    client.wait(run["id"], timeout_s=60)
    body = ui.get(f"/ui/runs/{run['id']}/log", params={"stdout": 0, "stderr": 0}).json()
    assert body["chunks"] == [
        {"stream": "stdout", "text": "héllo"},
        {"stream": "stderr", "text": "oops"},
    ]
    assert body["offsets"] == {"stdout": len("héllo".encode()), "stderr": 4}
    assert body["terminal"] is True
    again = ui.get(f"/ui/runs/{run['id']}/log", params=body["offsets"]).json()
    assert again["chunks"] == []
    assert ui.get(f"/ui/runs/{run['id']}/log", params={"stdout": "-1"}).status_code == 422


def test_a_task_page_shows_its_versions_yaml_and_last_change(
    server: Server, ui: httpx.Client
) -> None:
    bearer = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.url, headers=bearer, timeout=30) as http:
        for text in ("echo one", "echo two"):
            body = {"shell": text, "description": "<b>greets</b>"}
            assert http.put("/api/v1/tasks/greet", json=body).is_success
    listed = ui.get("/ui/tasks").text
    assert 'href="/ui/tasks/greet"' in listed
    page = ui.get("/ui/tasks/greet")
    assert page.status_code == 200
    assert "v2" in page.text
    assert "v1" in page.text
    assert "&lt;b&gt;greets&lt;/b&gt;" in page.text  # escaped
    assert re.search(r'<span class="del">-shell: echo one</span>', page.text)
    assert re.search(r'<span class="add">\+shell: echo two</span>', page.text)
    assert 'href="/ui/runs?task=greet"' in page.text
    assert ui.get("/ui/tasks/nothing").status_code == 404


GATED_WORKFLOW = (
    "name: gated\nsteps:\n  build: {shell: 'echo built'}\n"
    "  review: {needs: [build], gate: manual}\n"
)


def _workflow_run(http: httpx.Client, run_id: str, status: str) -> dict[str, Any]:
    """The workflow run once it has ``status`` (bounded: 30 s)."""
    deadline = time.monotonic() + 30
    while True:
        found: dict[str, Any] = http.get(f"/api/v1/workflow-runs/{run_id}").json()
        if found["status"] == status:
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.05)


def test_a_workflow_run_page_shows_its_steps_and_approves_its_gate(
    server: Server, ui: httpx.Client, client: Client
) -> None:
    bearer = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.url, headers=bearer, timeout=30) as http:
        yaml_body = {"Content-Type": "application/yaml"}
        made = http.post("/api/v1/workflows", content=GATED_WORKFLOW, headers=yaml_body)
        assert made.status_code == 201, made.text
        run_id = http.post("/api/v1/workflow-runs", json={"workflow": "gated"}).json()["id"]
        waiting = _workflow_run(http, run_id, "waiting")
        listed = ui.get("/ui/workflows").text
        assert f'href="/ui/workflows/{run_id}"' in listed
        assert "1 of 2" in listed  # steps done
        page = ui.get(f"/ui/workflows/{run_id}")
        assert page.status_code == 200
        build_run = waiting["steps"]["build"]["run_id"]
        assert f'href="/ui/runs/{build_run}"' in page.text
        assert 'id="approve-review"' in page.text
        assert 'id="approve-build"' not in page.text  # only a gate is approved
        assert "gate_waiting" in page.text  # the events

        viewer = client.create_token("wf-viewer", role="viewer")["token"]
        with login(server, viewer) as as_viewer:
            seen = as_viewer.get(f"/ui/workflows/{run_id}")
            assert seen.status_code == 200
            assert 'id="approve-review"' not in seen.text  # no buttons for a viewer
            refused = as_viewer.post(
                f"/ui/workflows/{run_id}/approve",
                data={"csrf": csrf_of(seen.text), "step": "review"},
            )
            assert refused.status_code == 403  # and the App refuses it anyway
        forged = ui.post(f"/ui/workflows/{run_id}/approve", data={"csrf": "x", "step": "review"})
        assert forged.status_code == 403
        assert _workflow_run(http, run_id, "waiting")["steps"]["review"]["status"] == "waiting"

        approved = ui.post(
            f"/ui/workflows/{run_id}/approve", data={"csrf": csrf_of(page.text), "step": "review"}
        )
        assert approved.status_code == 303
        assert approved.headers["location"] == f"/ui/workflows/{run_id}"
        _workflow_run(http, run_id, "completed")
        unknown = ui.post(
            f"/ui/workflows/{run_id}/skip", data={"csrf": csrf_of(page.text), "step": "nosuch"}
        )
        assert unknown.status_code == 409  # step_not_found, shown as a page
        assert ui.get(f"/ui/workflows/{'0' * 32}").status_code == 404


def test_the_overview_charts_the_tenants_last_hours(server: Server, client: Client) -> None:
    """GET /api/v1/stats/history and the overview's SVG charts read the same hourly rollup:
    a fresh tenant's two completed and one failed run, and nothing of other tenants."""
    tenant = f"h{uuid.uuid4().hex[:8]}"
    client.create_tenant(tenant)
    token = client.create_token(f"{tenant}-op", role="operator", tenant=tenant)["token"]
    with Client(server.url, token) as mine:
        runs = [mine.submit({"shell": s}) for s in ("true", "sleep 0.3", "exit 3")]
        for run in runs:
            mine.wait(run["id"], timeout_s=60)
        hours = mine._json("GET", "/api/v1/stats/history", params={"hours": 3})["hours"]
    assert len(hours) == 3
    assert [h["hour"] for h in hours] == sorted(h["hour"] for h in hours)
    assert sum(h["completed"] for h in hours) == 2
    assert sum(h["failed"] for h in hours) == 1
    [busy] = [h for h in hours if h["finished"]]
    assert busy["success_rate"] == pytest.approx(2 / 3)
    assert 0 < busy["duration_p50_s"] <= busy["duration_p95_s"] <= 3600
    assert busy["wait_p95_s"] is not None
    everyone = client._json("GET", "/api/v1/stats/history", params={"hours": 3})["hours"]
    assert sum(h["finished"] for h in everyone) >= 3
    with login(server, token) as ui:
        page = ui.get("/ui/").text
    assert page.count("<svg") == 4
    assert "Runs finished per hour" in page
    assert "Queue wait, p50 and p95" in page
    assert page.count('class="bar ok"') == 1
    assert page.count('class="bar fail"') == 1
    assert "3 runs finished in 24 hours" in page
    assert "66.7 %" in page  # the success rate, in the summary and the table
