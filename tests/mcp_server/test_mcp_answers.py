"""How a real ``serve`` answers each MCP request over HTTP: reads as one JSON body, anything
that acts, waits or asks for progress as an SSE stream (``mcp_server/answers.py``), in both
protocol eras, through raw HTTP (the content type is what is tested) and the SDK's client."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from acceptance.conftest import (
    Server,
    make_server,
    processes_with_marker,
    sleeper,
    wait_until_gone,
)

from .test_mcp_http import INIT, MCP_HEADERS, MODERN, mcp_client, modern_exchange

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = make_server(tmp_path_factory.mktemp("answers"), workers=2)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def finished(serve: Server) -> str:
    with serve.client() as client:
        run = client.submit({"shell": 'echo answered; echo r > "$MCPEXEC_OUTPUT_DIR/r.txt"'})
        assert client.wait(run["id"], 60)["status"] == "completed"
    run_id: str = run["id"]
    return run_id


class Legacy:
    """A 2025-11-25 session over raw HTTP."""

    def __init__(self, serve: Server) -> None:
        self.http = httpx.Client(
            base_url=serve.url,
            headers={**MCP_HEADERS, "Authorization": f"Bearer {serve.token}"},
            timeout=30,
        )
        with self.http.stream("POST", "/mcp", json=INIT) as answer:
            assert answer.headers["content-type"].startswith("text/event-stream")
            self.session = answer.headers["mcp-session-id"]
            answer.read()
        self.http.headers.update(
            {"Mcp-Session-Id": self.session, "MCP-Protocol-Version": "2025-11-25"}
        )
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert self.http.post("/mcp", json=note).status_code == 202

    def call(
        self, method: str, params: dict[str, Any], request_id: int = 5
    ) -> tuple[str, dict[str, Any]]:
        """The answer's content type and its JSON-RPC response."""
        body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        with self.http.stream("POST", "/mcp", json=body) as answer:
            assert answer.status_code == 200
            return answer.headers["content-type"], _response(answer)

    def stream(self, method: str, params: dict[str, Any], request_id: int) -> list[Any]:
        """Every message of a streamed answer, its notifications and then its response."""
        body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        with self.http.stream("POST", "/mcp", json=body) as answer:
            assert answer.headers["content-type"].startswith("text/event-stream")
            return _up_to_response(answer)

    def close(self) -> None:
        self.http.close()


def _response(answer: httpx.Response) -> dict[str, Any]:
    if answer.headers["content-type"].startswith("application/json"):
        message: dict[str, Any] = json.loads(answer.read())
        return message
    response: dict[str, Any] = _up_to_response(answer)[-1]
    return response


def _up_to_response(answer: httpx.Response) -> list[Any]:
    """An SSE answer's messages: its notifications, then the response."""
    messages = []
    for line in answer.iter_lines():
        if line.startswith("data:") and line[5:].strip():
            messages.append(json.loads(line[5:]))
            if "id" in messages[-1]:
                return messages
    raise AssertionError(f"no JSON-RPC response in the stream: {messages}")


def modern(serve: Server, method: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """One 2026-07-28 request (``params["_meta"]`` goes into the envelope's ``_meta``)."""
    name = params.get("name") if method == "tools/call" else params.get("uri")
    rest = {k: v for k, v in params.items() if k != "_meta"}
    status, kind, answer = modern_exchange(serve, method, rest, name=name, meta=params.get("_meta"))
    # 2026-07-28 maps a JSON-RPC error to an HTTP status (-32602: 400)
    assert status == 200 or "error" in answer, status
    return kind, answer


@pytest.fixture(params=["2025-11-25", "2026-07-28"])
def call(request: pytest.FixtureRequest, serve: Server) -> Iterator[Any]:
    if request.param == "2025-11-25":
        legacy = Legacy(serve)
        yield legacy.call
        legacy.close()
    else:
        yield lambda method, params: modern(serve, method, params)


def test_reads_are_answered_as_one_json_body(call: Any, finished: str) -> None:
    kind, answer = call("tools/call", {"name": "get_run", "arguments": {"run_id": finished}})
    assert kind.startswith("application/json")
    assert answer["result"]["structuredContent"]["status"] == "completed"
    kind, answer = call("tools/list", {})
    assert kind.startswith("application/json")
    assert {t["name"] for t in answer["result"]["tools"]} >= {"execute", "get_run"}
    kind, answer = call("resources/read", {"uri": f"mcpexec://runs/{finished}"})
    assert kind.startswith("application/json")
    assert finished in answer["result"]["contents"][0]["text"]
    # A refused read is a JSON answer too: the error, with the request's id.
    kind, answer = call("tools/call", {"name": "get_run", "arguments": {"run_id": "nope"}})
    assert kind.startswith("application/json")
    assert answer["id"] in (5, 7)  # Legacy.call's id, modern_exchange's


def test_every_read_only_tool_answers_one_json_response(serve: Server, finished: str) -> None:
    # A JSON answer carries the response alone: a read answered so must send nothing before
    # it (answers.py). Every tool marked readOnlyHint, the ones added later included (with no
    # arguments: refused, which is an answer too), in the era whose JSON answer would carry a
    # notification instead of the response.
    known: dict[str, dict[str, Any]] = {
        "get_run": {"run_id": finished},
        "read_logs": {"run_id": finished},
        "list_artifacts": {"run_id": finished},
        "read_artifact": {"run_id": finished, "name": "r.txt"},
        "get_task": {"name": "no-such-task"},
        "get_workflow_status": {"run_id": finished},
        "list_workflows": {"runs": True},
    }
    legacy = Legacy(serve)
    try:
        _, listed = legacy.call("tools/list", {})
        reads = [
            t["name"]
            for t in listed["result"]["tools"]
            if (t.get("annotations") or {}).get("readOnlyHint")
        ]
        assert {"get_run", "list_runs", "read_logs"} <= set(reads)
        for name in reads:
            kind, answer = legacy.call(
                "tools/call", {"name": name, "arguments": known.get(name, {})}
            )
            assert kind.startswith("application/json"), name
            assert answer["id"] == 5, (name, answer)
            assert "result" in answer or "error" in answer, (name, answer)
        _, answer = legacy.call(
            "tools/call", {"name": "read_artifact", "arguments": known["read_artifact"]}
        )
        assert not answer["result"].get("isError"), answer
    finally:
        legacy.close()


def test_json_reads_beside_a_streaming_call_in_one_session(serve: Server, finished: str) -> None:
    # The choice is per request: reads answered as JSON while an execute of the same session
    # streams its progress; neither gets the other's form or messages.
    legacy = Legacy(serve)
    params = {
        "name": "execute",
        "arguments": {"shell": "sleep 1.5; echo streamed"},
        "_meta": {"progressToken": "exec"},
    }
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            streaming = pool.submit(legacy.stream, "tools/call", params, 100)
            reads = 0
            while not streaming.done() or reads < 5:
                reads += 1  # ids of their own: a session's requests in flight have distinct ids
                kind, answer = legacy.call(
                    "tools/call",
                    {"name": "get_run", "arguments": {"run_id": finished}},
                    1000 + reads,
                )
                assert kind.startswith("application/json")
                assert answer["id"] == 1000 + reads
                assert answer["result"]["structuredContent"]["id"] == finished
            messages = streaming.result(timeout=60)
    finally:
        legacy.close()
    *notes, response = messages
    assert notes, "no progress on the stream"
    assert {n["method"] for n in notes} == {"notifications/progress"}
    assert {n["params"]["progressToken"] for n in notes} == {"exec"}
    assert response["id"] == 100
    assert response["result"]["structuredContent"]["status"] == "completed"


def test_what_acts_waits_or_asks_for_progress_streams(serve: Server, finished: str) -> None:
    # 2025-11-25 answers a stream whenever it streams; 2026-07-28 answers a stream that sent
    # nothing before its handler returned as JSON as well, so its choice is seen by what a
    # stream does (the hang-up below) and by the cost (bench_mcp), not by the content type.
    streams = [
        ("tools/call", {"name": "execute", "arguments": {"command": ["true"]}}),
        ("tools/call", {"name": "get_run", "arguments": {"run_id": finished, "wait_s": 0.2}}),
        (
            "tools/call",
            {"name": "get_run", "arguments": {"run_id": finished}, "_meta": {"progressToken": 1}},
        ),
        ("tools/call", {"name": "list_runs", "arguments": {}, "task": {"ttl": 1000}}),
    ]
    legacy = Legacy(serve)
    try:
        for method, params in streams:
            kind, answer = legacy.call(method, params)
            assert kind.startswith("text/event-stream"), (method, params)
            assert answer["id"] == 5, answer
    finally:
        legacy.close()


async def test_a_read_that_waits_sends_progress_to_a_client_that_asks(serve: Server) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    for mode in ("auto", "legacy"):
        seen.clear()
        async with mcp_client(serve, mode, token=serve.token) as client:
            # Submitted once the session is open: the wait spans the run's start (reported)
            # and most of its 1.5 s (a report per progress interval, 1 s).
            with serve.client() as rest:
                run = rest.submit({"shell": "sleep 1.5; echo waited"})
            result = await client.call_tool(
                "get_run", {"run_id": run["id"], "wait_s": 30}, progress_callback=on_progress
            )
        assert result.structured_content is not None
        assert result.structured_content["status"] == "completed"
        assert seen, f"no progress while get_run waited ({mode})"


def test_hanging_up_on_a_2026_execute_cancels_its_run(serve: Server) -> None:
    # 2026-07-28 has no notifications/cancelled: closing the response is the cancel, so an
    # execute must keep its stream (a JSON answer would leave nobody watching the connection).
    marker = f"hangup-{time.monotonic_ns()}"
    params = {
        "name": "execute",
        "arguments": {"shell": sleeper(marker), "wait_s": 60, "labels": {"case": marker}},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
            "progressToken": "p",
        },
    }
    body = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": params}
    url = urllib.parse.urlsplit(serve.url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    headers = {
        **MCP_HEADERS,
        "Content-Type": "application/json",
        "Authorization": f"Bearer {serve.token}",
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": "tools/call",
        "Mcp-Name": "execute",
    }
    conn.request("POST", "/mcp", body=json.dumps(body), headers=headers)
    answer = conn.getresponse()  # headers come with the first progress notification
    assert answer.getheader("content-type", "").startswith("text/event-stream")
    with serve.client() as rest:
        runs = rest.list_runs(label=f"case={marker}")["runs"]
        assert len(runs) == 1, runs
        deadline = time.monotonic() + 30
        while not processes_with_marker(marker) and time.monotonic() < deadline:
            time.sleep(0.05)  # a process appearing is not an event this process can await
        assert processes_with_marker(marker), "the run never started"
        conn.close()
        assert rest.wait(runs[0]["id"], 30)["status"] == "cancelled"
    assert wait_until_gone(marker, 30) == []
