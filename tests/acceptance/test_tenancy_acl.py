"""The ACL matrix over a real ``mcpexec serve``: every run route and MCP tool, for every role,
on its own run / same-tenant run of another principal / run of another tenant, generated from one
table (``EXPECTED``, written from docs/tenancy.md, not from the code), asserting the exact
answer. Plus revoked and expired tokens, refused on the next request over REST and MCP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from .conftest import Server, make_server

pytestmark = pytest.mark.anyio

ROLES = ("admin", "operator", "submitter", "viewer")
#: role → action → "all" | "own" | None, as docs/tenancy.md states it.
EXPECTED: dict[str, dict[str, str | None]] = {
    "admin": dict.fromkeys(
        ("submit", "read", "cancel", "manage_tokens", "manage_tenants", "read_audit"), "all"
    ),
    "operator": {
        "submit": "all",
        "read": "all",
        "cancel": "all",
        "manage_tokens": "all",
        "manage_tenants": None,
        "read_audit": "all",
    },
    "submitter": {
        "submit": "all",
        "read": "own",
        "cancel": "own",
        "manage_tokens": None,
        "manage_tenants": None,
        "read_audit": None,
    },
    "viewer": {
        "submit": None,
        "read": "all",
        "cancel": None,
        "manage_tokens": None,
        "manage_tenants": None,
        "read_audit": None,
    },
}
#: REST route of each run action: (action checked, method, path under /api/v1/runs/{id}).
RUN_ROUTES = {
    "get": ("read", "GET", ""),
    "logs": ("read", "GET", "/logs"),
    "attempts": ("read", "GET", "/attempts"),
    "artifacts": ("read", "GET", "/artifacts"),
    "cancel": ("cancel", "DELETE", ""),
    "rerun": ("rerun", "POST", "/rerun"),
}
#: MCP tool of each run action.
RUN_TOOLS: dict[str, tuple[str, dict[str, Any]]] = {
    "get_run": ("read", {}),
    "read_logs": ("read", {}),
    "list_artifacts": ("read", {}),
    "cancel_run": ("cancel", {}),
    "rerun": ("rerun", {}),
}
RESOURCES = ("own", "same_tenant", "other_tenant")
#: REST route of each schedule action: (run action whose scope applies, method, suffix, body).
#: A schedule is governed like its runs (docs/tenancy.md): read, or cancel to change it.
SCHEDULE_ROUTES: dict[str, tuple[str, str, str, dict[str, Any] | None]] = {
    "get": ("read", "GET", "", None),
    "next": ("read", "GET", "/next", None),
    "history": ("read", "GET", "/history", None),
    "update": ("cancel", "PATCH", "", {"paused": True}),
    "trigger": ("cancel", "POST", "/trigger", None),
}


def expected(role: str, action: str, resource: str) -> str:
    """``ok``, ``403`` or ``404`` for a run action on a resource."""
    if role == "admin":
        return "ok"
    if resource == "other_tenant":
        return "404"
    if action == "rerun":  # read the original, then submit
        read, submit = expected(role, "read", resource), EXPECTED[role]["submit"]
        return read if read != "ok" else ("ok" if submit else "403")
    scope = EXPECTED[role][action]
    if scope is None or (scope == "own" and resource != "own"):
        return "403"
    return "ok"


def expected_plain(role: str, action: str) -> str:
    return "ok" if EXPECTED[role][action] else "403"


@dataclass
class World:
    server: Server
    tokens: dict[str, str]  # role -> token (acme, except admin)
    runs: dict[tuple[str, str], str]  # (role, resource) -> run id
    other_token: str
    schedules: dict[tuple[str, str], str]  # (role, resource) -> schedule id


def _http(server: Server, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )


def _schedule(http: httpx.Client) -> str:
    """A paused hourly schedule of the tenant's task ``acl`` (defined first when missing)."""
    defined = http.put("/api/v1/tasks/acl", json={"command": ["echo", "acl"]})
    assert defined.status_code in (200, 201), defined.text
    made = http.post("/api/v1/schedules", json={"task": "acl", "every": "1h", "paused": True})
    assert made.status_code == 201, made.text
    schedule_id: str = made.json()["id"]
    return schedule_id


def _submit_done(http: httpx.Client) -> str:
    answer = http.post("/api/v1/runs", json={"command": ["echo", "acl"]})
    assert answer.status_code == 202, answer.text
    run_id: str = answer.json()["id"]
    done = http.get(f"/api/v1/runs/{run_id}", params={"wait": 30}).json()
    assert done["status"] == "completed", done
    return run_id


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    srv = make_server(tmp_path_factory.mktemp("acl"), workers=2)
    srv.start()
    try:
        with _http(srv, srv.token) as admin:
            for tenant in ("acme", "other"):
                assert admin.post("/api/v1/tenants", json={"id": tenant}).status_code == 201

            def token(role: str, tenant: str, name: str) -> str:
                body = {"name": name, "role": role, "tenant": tenant}
                answer = admin.post("/api/v1/tokens", json=body)
                assert answer.status_code == 201, answer.text
                secret: str = answer.json()["token"]
                return secret

            tokens = {"admin": srv.token}
            for role in ("operator", "submitter", "viewer"):
                tokens[role] = token(role, "acme", f"{role}-1")
            peer = token("submitter", "acme", "submitter-2")
            other = token("operator", "other", "other-op")
        runs: dict[tuple[str, str], str] = {}
        schedules: dict[tuple[str, str], str] = {}
        with _http(srv, peer) as h:
            same, same_schedule = _submit_done(h), _schedule(h)
        with _http(srv, other) as h:
            foreign, foreign_schedule = _submit_done(h), _schedule(h)
        for role in ROLES:
            if EXPECTED[role]["submit"]:
                with _http(srv, tokens[role]) as h:
                    runs[(role, "own")] = _submit_done(h)
                    schedules[(role, "own")] = _schedule(h)
            runs[(role, "same_tenant")] = same
            runs[(role, "other_tenant")] = foreign
            schedules[(role, "same_tenant")] = same_schedule
            schedules[(role, "other_tenant")] = foreign_schedule
        yield World(srv, tokens, runs, other, schedules)
    finally:
        srv.stop()


def _rest_outcome(status: int) -> str:
    if status in (200, 201, 202):
        return "ok"
    return str(status)


def test_acl_matrix_over_rest(world: World) -> None:
    cases = denied = 0
    failures = []
    for role in ROLES:
        with _http(world.server, world.tokens[role]) as http:
            for route, (action, method, suffix) in RUN_ROUTES.items():
                for resource in RESOURCES:
                    run_id = world.runs.get((role, resource))
                    if run_id is None:  # a viewer owns no run
                        continue
                    answer = http.request(method, f"/api/v1/runs/{run_id}{suffix}")
                    got, want = _rest_outcome(answer.status_code), expected(role, action, resource)
                    cases += 1
                    denied += want != "ok"
                    if got != want:
                        failures.append((role, route, resource, want, got, answer.text[:200]))
                    elif want == "403":
                        assert answer.json()["error"]["code"] == "forbidden"
            plain = {
                "submit": ("POST", "/api/v1/runs", {"command": ["true"]}),
                "manage_tokens": (
                    "POST",
                    "/api/v1/tokens",
                    {"name": f"by-{role}", "role": "viewer", "tenant": "acme"},
                ),
                "manage_tenants": ("POST", "/api/v1/tenants", {"id": f"t-{role}"}),
                "read_audit": ("GET", "/api/v1/audit", None),
            }
            for action, (method, path, body) in plain.items():
                answer = http.request(method, path, json=body)
                got, want = _rest_outcome(answer.status_code), expected_plain(role, action)
                cases += 1
                denied += want != "ok"
                if got != want:
                    failures.append((role, action, "-", want, got, answer.text[:200]))
            # listing: a submitter sees its own runs only; nobody sees another tenant's
            listed = {
                r["id"] for r in http.get("/api/v1/runs", params={"limit": 500}).json()["runs"]
            }
            cases += 1
            asked = http.get("/api/v1/runs", params={"tenant": "other", "limit": 500}).json()
            if role != "admin":
                assert world.runs[(role, "other_tenant")] not in listed
                assert asked["runs"] == []  # a tenant filter does not reach past one's own
            else:
                assert {r["id"] for r in asked["runs"]} == {world.runs[(role, "other_tenant")]}
            if role == "submitter":
                assert world.runs[(role, "same_tenant")] not in listed
                assert world.runs[(role, "own")] in listed
            else:
                assert world.runs[(role, "same_tenant")] in listed
    # an operator of another tenant: acme's tokens and quotas do not exist for it
    with _http(world.server, world.other_token) as http:
        for method, path, body in (
            ("POST", "/api/v1/tokens", {"name": "x", "role": "viewer", "tenant": "acme"}),
            ("GET", "/api/v1/tenants/acme", None),
            ("GET", "/api/v1/audit?tenant=acme", None),
        ):
            answer = http.request(method, path, json=body)
            cases += 1
            denied += 1
            if answer.status_code != 404:
                failures.append(
                    ("other-op", path, "acme", "404", str(answer.status_code), answer.text)
                )
    print(f"ACL matrix over REST: {cases} cases, {denied} denied as expected")
    assert not failures, failures


def test_schedule_acl_over_rest(world: World) -> None:
    """Schedules and tasks follow the same rule: another tenant's are 404; a submitter reads and
    changes only its own schedules; a viewer reads; creating needs ``submit``."""
    cases = denied = 0
    failures = []
    for role in ROLES:
        with _http(world.server, world.tokens[role]) as http:
            for route, (action, method, suffix, body) in SCHEDULE_ROUTES.items():
                for resource in RESOURCES:
                    schedule_id = world.schedules.get((role, resource))
                    if schedule_id is None:  # a viewer owns none
                        continue
                    path = f"/api/v1/schedules/{schedule_id}{suffix}"
                    answer = http.request(method, path, json=body)
                    got, want = _rest_outcome(answer.status_code), expected(role, action, resource)
                    cases += 1
                    denied += want != "ok"
                    if got != want:
                        failures.append((role, route, resource, want, got, answer.text[:200]))
            created = http.post(
                "/api/v1/schedules", json={"task": "acl", "every": "1h", "paused": True}
            )
            got, want = _rest_outcome(created.status_code), expected_plain(role, "submit")
            if role == "viewer":  # its tenant has the task; it may not schedule it
                cases, denied = cases + 1, denied + 1
                if got != want:
                    failures.append((role, "create", "-", want, got, created.text[:200]))
            task = http.get("/api/v1/tasks/acl")
            cases += 1
            if task.status_code != 200:
                failures.append((role, "get task", "-", "ok", str(task.status_code), task.text))
            listed = {s["id"] for s in http.get("/api/v1/schedules").json()["schedules"]}
            cases += 1
            if role != "admin":
                assert world.schedules[(role, "other_tenant")] not in listed
            if role == "submitter":
                assert world.schedules[(role, "same_tenant")] not in listed
                assert world.schedules[(role, "own")] in listed
            else:
                assert world.schedules[(role, "same_tenant")] in listed
    with _http(world.server, world.tokens["viewer"]) as http:
        other_tasks = {t["name"] for t in http.get("/api/v1/tasks").json()["tasks"]}
        assert other_tasks == {"acl"}  # acme's own task, not another tenant's of the same name
    print(f"ACL matrix of schedules over REST: {cases} cases, {denied} denied as expected")
    assert not failures, failures


def _mcp(server: Server, token: str) -> Client:
    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30, read=60)
    )
    transport = streamable_http_client(f"{server.url}/mcp", http_client=http)
    return Client(transport, mode="auto", read_timeout_seconds=60)


async def _tool_outcome(client: Client, name: str, arguments: dict[str, Any]) -> str:
    try:
        result = await client.call_tool(name, arguments)
    except MCPError as exc:
        return "403" if exc.error.code == -32001 else f"mcp error {exc.error.code}"
    if not result.is_error:
        return "ok"
    text = " ".join(getattr(c, "text", "") for c in result.content)
    if "not_found" in text:
        return "404"
    if "forbidden" in text:
        return "403"
    return "ok" if "already finished" in text else f"tool error: {text[:120]}"


async def test_acl_matrix_over_mcp_http(world: World) -> None:
    cases = denied = 0
    failures = []
    for role in ROLES:
        async with _mcp(world.server, world.tokens[role]) as client:
            for tool, (action, extra) in RUN_TOOLS.items():
                for resource in RESOURCES:
                    run_id = world.runs.get((role, resource))
                    if run_id is None:
                        continue
                    got = await _tool_outcome(client, tool, {"run_id": run_id, **extra})
                    want = expected(role, action, resource)
                    cases += 1
                    denied += want != "ok"
                    if got != want:
                        failures.append((role, tool, resource, want, got))
            got = await _tool_outcome(client, "submit_run", {"command": ["true"]})
            want = expected_plain(role, "submit")
            cases += 1
            denied += want != "ok"
            if got != want:
                failures.append((role, "submit_run", "-", want, got))
            got = await _tool_outcome(client, "list_runs", {})
            cases += 1
            if got != "ok":
                failures.append((role, "list_runs", "-", "ok", got))
    print(f"ACL matrix over MCP HTTP: {cases} cases, {denied} denied as expected")
    assert not failures, failures


async def test_revoked_and_expired_tokens_are_refused_on_the_next_request(world: World) -> None:
    srv = world.server
    with _http(srv, srv.token) as admin:
        made = admin.post(
            "/api/v1/tokens", json={"name": "short", "role": "viewer", "tenant": "acme"}
        ).json()
        expiring = admin.post(
            "/api/v1/tokens",
            json={"name": "brief", "role": "viewer", "tenant": "acme", "expires_in_s": 1},
        ).json()
        with _http(srv, made["token"]) as viewer:
            assert viewer.get("/api/v1/runs").status_code == 200
            async with _mcp(srv, made["token"]) as client:
                assert await _tool_outcome(client, "list_runs", {}) == "ok"
            assert admin.delete(f"/api/v1/tokens/{made['id']}").status_code == 200
            refused = viewer.get("/api/v1/runs")
            assert refused.status_code == 401
            assert made["token"] not in refused.text
        mcp_refused = await anyio.to_thread.run_sync(
            lambda: httpx.post(
                f"{srv.url}/mcp",
                json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                headers={
                    "Authorization": f"Bearer {made['token']}",
                    "Accept": "application/json, text/event-stream",
                },
            )
        )
        assert mcp_refused.status_code == 401
        # the expiring token: refused once its second is over (bounded wait for the clock)
        with _http(srv, expiring["token"]) as brief:
            deadline = time.monotonic() + 15
            while brief.get("/api/v1/runs").status_code != 401:
                assert time.monotonic() < deadline, "an expired token was still accepted"
                await anyio.sleep(0.2)  # wall-clock time must pass: no event to await
        listed = admin.get("/api/v1/tokens", params={"tenant": "acme"}).json()["tokens"]
        row = next(t for t in listed if t["id"] == made["id"])
        assert row["revoked"] is True
        assert all("token" not in t and "token_hash" not in t for t in listed)
        actions = [e["action"] for e in admin.get("/api/v1/audit").json()["entries"]]
        assert "token.revoke" in actions
        assert "token.create" in actions
