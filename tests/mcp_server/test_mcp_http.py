"""A real ``mcpexec serve`` on a loopback port: MCP over Streamable HTTP at /mcp, for clients of
both protocol eras, with the REST API's bearer tokens."""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp import types as mt
from mcp.client.streamable_http import streamable_http_client

from acceptance.conftest import Server, make_server

from .subscribe_flow import Updates, subscribe_and_follow

pytestmark = pytest.mark.anyio

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = make_server(tmp_path_factory.mktemp("http"), workers=2)
    srv.start()
    yield srv
    srv.stop()


def mcp_client(
    server: Server,
    mode: str,
    token: str | None = None,
    statuses: list[int] | None = None,
    message_handler: Any = None,
) -> Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def record(response: httpx2.Response) -> None:
        if statuses is not None:
            statuses.append(response.status_code)

    http = httpx2.AsyncClient(
        headers=headers,
        timeout=httpx2.Timeout(30, read=120),
        event_hooks={"response": [record]},
    )
    transport = streamable_http_client(f"{server.url}/mcp", http_client=http)
    return Client(
        transport,
        mode=mode,
        read_timeout_seconds=60,
        message_handler=message_handler,
    )


def data(result: mt.CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


@pytest.mark.parametrize(("mode", "version"), [("auto", "2026-07-28"), ("legacy", "2025-11-25")])
async def test_both_eras_execute_and_poll(serve: Server, mode: str, version: str) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with mcp_client(serve, mode, serve.token) as client:
        assert client.protocol_version == version
        tools = {t.name for t in (await client.list_tools()).tools}
        assert {"execute", "submit_run", "get_run", "cancel_run"} <= tools
        done = data(
            await client.call_tool(
                "execute", {"shell": "sleep 1.5; echo http"}, progress_callback=on_progress
            )
        )
        assert done["stdout"] == "http\n"
        assert seen, "no progress notifications over HTTP"
        run_id = data(await client.call_tool("submit_run", {"command": ["echo", "x"]}))["run_id"]
        run = data(await client.call_tool("get_run", {"run_id": run_id, "wait_s": 30}))
        assert run["status"] == "completed"
        missing = await client.call_tool("get_run", {"run_id": "nope"})
        assert missing.is_error
    # the same run through the REST API, with the same token
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {serve.token}"}) as rest:
        answer = await rest.get(f"{serve.url}/api/v1/runs/{run_id}")
    assert answer.json()["status"] == "completed"


@pytest.mark.parametrize("token", [None, "mcpx_not-a-real-token"])
def test_without_a_valid_token_is_401(serve: Server, token: str | None) -> None:
    headers = dict(MCP_HEADERS)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    answer = httpx.post(f"{serve.url}/mcp", json=INIT, headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].lower().startswith("bearer")


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_sdk_client_without_token_is_refused(serve: Server, mode: str) -> None:
    statuses: list[int] = []
    with pytest.raises(Exception):  # noqa: PT011, B017 - the SDK's error type varies by era
        async with mcp_client(serve, mode, statuses=statuses) as client:
            await client.list_tools()
    assert statuses
    assert set(statuses) == {401}


def test_dns_rebinding_protection_rejects_foreign_hosts(serve: Server) -> None:
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {serve.token}"}
    ok = httpx.post(f"{serve.url}/mcp", json=INIT, headers=headers)
    assert ok.status_code == 200
    evil = httpx.post(
        f"{serve.url}/mcp", json=INIT, headers={**headers, "Host": "evil.example:8002"}
    )
    assert evil.status_code == 421
    origin = httpx.post(
        f"{serve.url}/mcp", json=INIT, headers={**headers, "Origin": "http://evil.example"}
    )
    assert origin.status_code == 403


def test_extra_allowed_hosts_come_from_settings(tmp_path: Path) -> None:
    srv = make_server(tmp_path, workers=0, MCPEXEC_MCP_ALLOWED_HOSTS="proxy.example, other.test")
    srv.start()
    try:
        headers = {**MCP_HEADERS, "Authorization": f"Bearer {srv.token}"}
        for host in ("proxy.example", "proxy.example:443", "other.test:8002"):
            answer = httpx.post(f"{srv.url}/mcp", json=INIT, headers={**headers, "Host": host})
            assert answer.status_code == 200, host
        evil = httpx.post(f"{srv.url}/mcp", json=INIT, headers={**headers, "Host": "evil.test"})
        assert evil.status_code == 421
    finally:
        srv.stop()


def test_rest_api_still_answers_beside_mcp(serve: Server) -> None:
    assert httpx.get(f"{serve.url}/health").status_code == 200
    assert httpx.get(f"{serve.url}/api/v1/runs").status_code == 401


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")
async def test_legacy_session_subscribes_to_a_runs_logs(tmp_path: Path) -> None:
    """resources/subscribe over a real serve's Streamable HTTP session: updates arrive on the
    session's GET stream as output arrives and when the run finishes; unsubscribing stops them.
    The runs execute unsandboxed so that they see the test's gate files."""
    srv = make_server(tmp_path, workers=1, MCPEXEC_SANDBOX="none")
    srv.start()
    try:
        updates = Updates()
        async with mcp_client(srv, "legacy", srv.token, message_handler=updates) as client:
            assert client.protocol_version == "2025-11-25"
            await subscribe_and_follow(client, updates, tmp_path / "gates")
    finally:
        srv.stop()


# -- header handling and auth metadata (issue 9 defects 4 and 8, issue 8) ------------------------
MODERN = "2026-07-28"
TASKS_EXT = "io.modelcontextprotocol/tasks"


def modern_call(
    serve: Server,
    method: str,
    params: dict[str, Any],
    *,
    name: str | None = None,
    tasks: bool = False,
    authorization: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """One raw 2026-07-28 request; returns the HTTP status and the JSON-RPC answer."""
    status, _, answer = modern_exchange(
        serve, method, params, name=name, tasks=tasks, authorization=authorization
    )
    return status, answer


def modern_exchange(
    serve: Server,
    method: str,
    params: dict[str, Any],
    *,
    name: str | None = None,
    tasks: bool = False,
    authorization: str | None = None,
    meta: dict[str, Any] | None = None,
) -> tuple[int, str, dict[str, Any]]:
    """:func:`modern_call` with more ``_meta`` (e.g. a ``progressToken``), also returning the
    answer's content type; from a stream, the response (its notifications skipped)."""
    capabilities: dict[str, Any] = {"extensions": {TASKS_EXT: {}}} if tasks else {}
    envelope = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": capabilities,
        **(meta or {}),
    }
    body = {"jsonrpc": "2.0", "id": 7, "method": method, "params": {**params, "_meta": envelope}}
    headers = {
        **MCP_HEADERS,
        "Content-Type": "application/json",
        "Authorization": authorization or f"Bearer {serve.token}",
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": method,
    }
    if name is not None:
        headers["Mcp-Name"] = name
    # http.client, not httpx: h11 refuses to send a header value with trailing whitespace,
    # which is what one test needs.
    url = urllib.parse.urlsplit(serve.url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    try:
        conn.request("POST", "/mcp", body=json.dumps(body), headers=headers)
        response = conn.getresponse()
        kind = response.getheader("content-type", "")
        if kind.startswith("application/json"):
            return response.status, kind, json.loads(response.read())
        while line := response.readline().decode():  # SSE: up to the response
            if line.startswith("data:") and line[5:].strip():
                message = json.loads(line[5:])
                if "id" in message:
                    return response.status, kind, message
    finally:
        conn.close()
    raise AssertionError("no JSON-RPC answer")


def test_mcp_accepts_the_bearer_headers_the_rest_api_accepts(serve: Server) -> None:
    for header in (f"Bearer  {serve.token}", f"bearer {serve.token}", f"Bearer \t{serve.token}"):
        status, answer = modern_call(serve, "tools/list", {}, authorization=header)
        assert status == 200, header
        assert answer["result"]["tools"]
        rest = httpx.get(f"{serve.url}/api/v1/runs", headers={"Authorization": header})
        assert rest.status_code == 200, header


def test_mcp_name_is_trimmed_like_any_http_field_value(serve: Server) -> None:
    status, answer = modern_call(
        serve, "tools/call", {"name": "list_runs", "arguments": {}}, name="list_runs  "
    )
    assert status == 200
    assert "result" in answer


def _task(serve: Server) -> str:
    status, answer = modern_call(
        serve,
        "tools/call",
        {"name": "execute", "arguments": {"command": ["true"]}},
        name="execute",
        tasks=True,
    )
    assert status == 200
    assert answer["result"]["resultType"] == "task"
    task_id: str = answer["result"]["taskId"]
    return task_id


def test_tasks_get_with_another_tasks_mcp_name_is_a_header_mismatch(serve: Server) -> None:
    task_id = _task(serve)
    status, answer = modern_call(serve, "tasks/get", {"taskId": task_id}, name="f" * 32, tasks=True)
    assert status == 400
    assert answer["error"]["code"] == -32020
    status, answer = modern_call(serve, "tasks/get", {"taskId": task_id}, name=task_id, tasks=True)
    assert status == 200
    assert answer["result"]["resultType"] == "complete"


def test_listening_for_tasks_needs_the_extension(serve: Server) -> None:
    task_id = _task(serve)
    _, answer = modern_call(
        serve, "subscriptions/listen", {"notifications": {"taskIds": [task_id]}}
    )
    assert answer["error"]["code"] == -32021


def test_no_oauth_metadata_for_bearer_tokens(serve: Server) -> None:
    for path in (
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ):
        assert httpx.get(f"{serve.url}{path}").status_code == 404
    answer = httpx.post(f"{serve.url}/mcp", json=INIT, headers=MCP_HEADERS)
    assert answer.status_code == 401
    assert "resource_metadata" not in answer.headers["www-authenticate"]


@pytest.mark.parametrize("declared", [True, False])
def test_an_oversized_mcp_body_is_refused_before_it_is_read(serve: Server, declared: bool) -> None:
    # /mcp is dispatched ahead of the REST API (asgi.ServerApp) but keeps its body cap: 413 in
    # the API's error format, whether the size is declared or only found while reading.
    limit = 8 * 1024 * 1024
    body = json.dumps({**INIT, "padding": "x" * (limit + 1)}).encode()
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {serve.token}"}
    content: Any = (
        body if declared else iter([body[i : i + 65536] for i in range(0, len(body), 65536)])
    )
    answer = httpx.post(f"{serve.url}/mcp", content=content, headers=headers, timeout=30)
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"]["code"] == "payload_too_large"
