"""The gateway wired into ``mcpexec serve``, over real HTTP: ``/api/v1/tools``, a call,
``/api/v1/servers``, reloads (``servers:reload`` and SIGHUP), and seed 001's ``GET /tools`` and
``POST /execute`` curl examples verbatim (allowed and blocked), against a real server-everything
(npm), the SDK fixture server and the built-in ``fs``."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from acceptance.conftest import Server, free_port

from .helpers import fixture_server, npm_server


@pytest.fixture(scope="module")
def gateway_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One serve for the module: server-everything (eager), the fixture server (lazy), fs."""
    root = tmp_path_factory.mktemp("wiring")
    home, box = root / "home", root / "box"
    home.mkdir()
    (root / "box").mkdir()
    (box / "test.txt").write_text("inside the sandbox\n")
    config = root / "mcp_servers.json"
    config.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "everything": {**npm_server("TEST_MCP_EVERYTHING"), "start": "eager"},
                    "fx": fixture_server(timeout_s=30),
                }
            }
        )
    )
    srv = Server(
        home=home,
        port=free_port(),
        workers=1,
        extra_env={
            "MCPEXEC_SANDBOX": "none",
            "MCP_CONFIG_PATH": str(config),  # the seed's names
            "SANDBOX_DIRECTORY": str(box),
        },
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        assert "Traceback" not in srv.log(), srv.log()[-3000:]


def _http(srv: Server) -> httpx.Client:
    return httpx.Client(
        base_url=srv.url, headers={"Authorization": f"Bearer {srv.token}"}, timeout=60
    )


def _config(srv: Server) -> Path:
    return Path(srv.extra_env["MCP_CONFIG_PATH"])


def test_tools_lists_every_server_with_filter(gateway_server: Server) -> None:
    with _http(gateway_server) as http:
        tools = http.get("/api/v1/tools").json()["tools"]
        names = {t["name"] for t in tools}
        assert {"everything.echo", "fx.echo", "fs.read_text_file"} <= names
        echo = next(t for t in tools if t["name"] == "everything.echo")
        assert echo["server"] == "everything"
        assert echo["tool"] == "echo"
        assert echo["inputSchema"]["properties"]["message"]["type"] == "string"
        only = http.get("/api/v1/tools", params={"server": "fs"}).json()["tools"]
        assert only
        assert {t["server"] for t in only} == {"fs"}
        missing = http.get("/api/v1/tools", params={"server": "nope"})
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "unknown_tool"
        # Seed 001's shape: name, description, inputSchema.
        seed = http.get("/tools").json()["tools"]
        assert set(seed[0]) == {"name", "description", "inputSchema"}


def test_call_answers_the_result_and_each_failure_its_code(gateway_server: Server) -> None:
    with _http(gateway_server) as http:
        ok = http.post("/api/v1/tools/everything.echo:call", json={"arguments": {"message": "hi"}})
        assert ok.status_code == 200, ok.text
        body = ok.json()
        assert body["status"] == "success"
        assert body["tool"] == "everything.echo"
        assert body["output"] == {"content": "Echo: hi"}
        assert body["content"] == [{"type": "text", "text": "Echo: hi"}]
        assert body["execution_time_ms"] >= 0
        # The tool ran and said isError: 200, status error, what it said kept.
        failed = http.post("/api/v1/tools/fx.fail:call", json={"arguments": {"message": "no"}})
        assert failed.status_code == 200, failed.text
        assert failed.json()["status"] == "error"
        assert failed.json()["error"]["code"] == "tool_error"
        assert failed.json()["isError"] is True
        assert failed.json()["content"][0]["text"] == failed.json()["error"]["message"]
        bad = http.post("/api/v1/tools/everything.echo:call", json={"arguments": {"message": 5}})
        assert bad.status_code == 422
        assert bad.json()["error"]["code"] == "invalid_arguments"
        assert bad.json()["error"]["details"]["field"] == "message"
        unknown = http.post("/api/v1/tools/everything.nope:call", json={})
        assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_tool")
        extra = http.post("/api/v1/tools/everything.echo:call", json={"argument": {}})
        assert extra.status_code == 422  # the body's own fields are checked too
        timed = http.post(
            "/api/v1/tools/fx.hang:call", json={"arguments": {"seconds": 30}, "timeout_s": 0.3}
        )
        assert (timed.status_code, timed.json()["error"]["code"]) == (504, "timeout")


def test_a_server_dying_mid_call_answers_server_lost_then_recovers(
    gateway_server: Server,
) -> None:
    with _http(gateway_server) as http:
        lost = http.post("/api/v1/tools/fx.crash:call", json={})
        assert (lost.status_code, lost.json()["error"]["code"]) == (502, "server_lost")
        again = http.post("/api/v1/tools/fx.echo:call", json={"arguments": {"message": "back"}})
        assert again.json()["output"] == {"result": "back"}
        fx = http.get("/api/v1/servers/fx").json()
        assert fx["state"] == "ready"
        assert fx["restarts"] >= 1
        assert "fx.echo" in fx["tools"]


def test_seed_001_curl_examples(gateway_server: Server) -> None:
    """The seed's two curl commands, verbatim but for the bearer token and the port."""

    def curl(data: str) -> dict[str, Any]:
        out = subprocess.run(
            [
                "curl", "-s", "-X", "POST", f"{gateway_server.url}/execute",
                "-H", "Content-Type: application/json",
                "-H", f"Authorization: Bearer {gateway_server.token}",
                "-d", data,
            ],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        answer: dict[str, Any] = json.loads(out.stdout)
        return answer

    allowed = curl('{"tool_name": "read_text_file", "arguments": {"path": "test.txt"}}')
    assert allowed["status"] == "success"
    assert allowed["output"]["content"] == "inside the sandbox\n"
    blocked = curl('{"tool_name": "read_text_file", "arguments": {"path": "/etc/passwd"}}')
    assert blocked["status"] == "error"
    assert blocked["error"]["code"] == "path_outside_sandbox"
    assert blocked["error"]["message"] == (
        "Path validation failed: Path '/etc/passwd' is outside sandbox directory"
    )
    assert "root:" not in json.dumps(blocked)


def test_servers_health_and_unknown_server(gateway_server: Server) -> None:
    with _http(gateway_server) as http:
        answer = http.get("/api/v1/servers").json()
        by_name = {s["name"]: s for s in answer["servers"]}
        assert by_name["everything"]["state"] == "ready"  # eager: started with serve
        assert isinstance(by_name["everything"]["pid"], int)
        assert by_name["everything"]["tool_count"] > 5
        assert by_name["fs"]["transport"] == "builtin"
        assert answer["problems"] == []
        assert http.get("/api/v1/servers/nope").status_code == 404


def _wait_for(http: httpx.Client, condition: Any, seconds: float = 30.0) -> dict[str, Any]:
    # A SIGHUP reload has no answer to wait on: /api/v1/servers is read until it shows it,
    # every 50 ms, bounded.
    deadline = time.monotonic() + seconds
    while True:
        answer: dict[str, Any] = http.get("/api/v1/servers").json()
        if condition(answer) or time.monotonic() > deadline:
            return answer
        time.sleep(0.05)


def test_reload_adds_removes_and_names_bad_entries(gateway_server: Server) -> None:
    path = _config(gateway_server)
    original = path.read_text()
    config = json.loads(original)
    try:
        with _http(gateway_server) as http:
            config["mcpServers"]["fx2"] = fixture_server()
            config["mcpServers"]["broken"] = {"command": "x", "timeout_s": -1}
            path.write_text(json.dumps(config))
            diff = http.post("/api/v1/servers:reload").json()
            assert diff["added"] == ["fx2"]
            assert "everything" in diff["unchanged"]
            [problem] = diff["problems"]
            assert (problem["server"], problem["field"]) == ("broken", "timeout_s")
            assert str(path) in problem["message"]
            call = http.post("/api/v1/tools/fx2.echo:call", json={"arguments": {"message": "n"}})
            assert call.json()["status"] == "success"
            # Not JSON: refused, naming the file; the servers stay as they were.
            path.write_text("{not json")
            refused = http.post("/api/v1/servers:reload")
            assert refused.status_code == 422
            assert refused.json()["error"]["code"] == "gateway_config_invalid"
            assert str(path) in refused.json()["error"]["message"]
            names = {s["name"] for s in http.get("/api/v1/servers").json()["servers"]}
            assert "fx2" in names
            # SIGHUP: the same reload, without a token.
            path.write_text(original)
            assert gateway_server.proc is not None
            gateway_server.proc.send_signal(signal.SIGHUP)
            after = _wait_for(
                http,
                lambda a: not a["problems"] and "fx2" not in {s["name"] for s in a["servers"]},
            )
            assert "fx2" not in {s["name"] for s in after["servers"]}
            assert after["problems"] == []
    finally:
        path.write_text(original)


def test_cli_tools_call_and_servers(gateway_server: Server) -> None:
    listed = gateway_server.cli("tools", "--server", "everything")
    assert listed.returncode == 0, listed.stderr
    assert "everything.echo" in listed.stdout
    echo = gateway_server.cli("call", "everything.echo", "--arg", "message=hello there")
    assert (echo.returncode, echo.stdout) == (0, "Echo: hello there\n"), echo.stderr
    # --arg values are typed by the tool's inputSchema: numbers stay numbers.
    total = gateway_server.cli("call", "everything.get-sum", "--arg", "a=2", "--arg", "b=3")
    assert total.returncode == 0, total.stderr
    assert "5" in total.stdout
    as_json = gateway_server.cli("call", "fx.echo", "--args", '{"message": "j"}', "--json")
    assert json.loads(as_json.stdout)["output"] == {"result": "j"}
    failed = gateway_server.cli("call", "fx.fail", "--arg", "message=x")
    assert failed.returncode == 1
    assert "(tool_error)" in failed.stderr
    blocked = gateway_server.cli("call", "read_text_file", "--arg", "path=../../etc/passwd")
    assert blocked.returncode == 1
    assert "is outside sandbox directory (path_outside_sandbox)" in blocked.stderr
    unknown = gateway_server.cli("call", "nope.nothing")
    assert unknown.returncode == 1
    assert unknown.stderr.count("\n") == 1  # one line, no traceback
    servers = gateway_server.cli("servers", "list")
    assert servers.returncode == 0, servers.stderr
    assert "everything" in servers.stdout
    assert "ready" in servers.stdout
    show = gateway_server.cli("servers", "show", "everything")
    assert "everything.echo" in show.stdout
    reloaded = gateway_server.cli("servers", "reload")
    assert reloaded.returncode == 0, reloaded.stderr
    assert "everything" in reloaded.stdout


def _run(http: httpx.Client, body: dict[str, Any], wait: float = 30) -> dict[str, Any]:
    submitted = http.post("/api/v1/runs", json=body)
    assert submitted.status_code == 202, submitted.text
    run_id = submitted.json()["id"]
    answer: dict[str, Any] = http.get(f"/api/v1/runs/{run_id}", params={"wait": wait}).json()
    return answer


def test_a_tool_run_is_a_durable_run(gateway_server: Server) -> None:
    with _http(gateway_server) as http:
        tool = {"name": "everything.echo", "arguments": {"message": "durable"}}
        run = _run(http, {"tool": tool, "labels": {"t": "tool-run"}})
        assert run["status"] == "completed", run
        assert run["kind"] == "tool"
        assert run["spec"]["tool"] == {
            "server": "everything",
            "name": "echo",
            "arguments": {"message": "durable"},
        }
        assert run["result"]["content"] == [{"type": "text", "text": "Echo: durable"}]
        logs = http.get(f"/api/v1/runs/{run['id']}/logs", params={"format": "raw"})
        assert logs.text == "Echo: durable\n"
        [attempt] = http.get(f"/api/v1/runs/{run['id']}/attempts").json()["attempts"]
        assert attempt["isolation"] == "gateway (everything)"
        # Progress notifications of the downstream server are the run's progress.
        steps = {"duration": 0.6, "steps": 3}
        long = _run(
            http, {"tool": {"server": "everything", "name": "trigger-long-running-operation",
                            "arguments": steps}},
        )  # fmt: skip
        assert long["status"] == "completed", long
        assert long["progress"]["value"] == 1.0
        # Runs can be listed by tool (?tool=server.tool).
        listed = http.get("/api/v1/runs", params={"tool": "everything.echo"}).json()["runs"]
        assert run["id"] in [r["id"] for r in listed]
        assert all(r["spec"]["tool"]["name"] == "echo" for r in listed)
        assert long["id"] not in [r["id"] for r in listed]


def test_tool_run_failures_have_their_kinds(gateway_server: Server) -> None:
    with _http(gateway_server) as http:
        failed = _run(http, {"tool": {"name": "fx.fail", "arguments": {"message": "m"}}})
        assert (failed["status"], failed["failure"]["kind"]) == ("failed", "tool_error")
        assert failed["result"]["isError"] is True
        # What can be known at submit is refused there: the server, then (its tools known)
        # the tool and its arguments.
        for tool, status, code in (
            ({"name": "nowhere.echo"}, 404, "unknown_tool"),
            ({"name": "everything.nope"}, 404, "unknown_tool"),
            ({"name": "everything.echo", "arguments": {"message": 3}}, 422, "invalid_arguments"),
        ):
            refused = http.post("/api/v1/runs", json={"tool": tool})
            assert (refused.status_code, refused.json()["error"]["code"]) == (status, code)
        assert http.post("/api/v1/runs", json={"tool": {"name": "echo"}}).status_code == 422
        # The run's timeout_s bounds the whole call.
        timed = _run(
            http,
            {"tool": {"name": "fx.hang", "arguments": {"seconds": 30}}, "timeout_s": 0.5},
        )
        assert (timed["status"], timed["failure"]["kind"]) == ("failed", "timeout")


def test_a_tool_run_is_retried_after_its_server_crashed(
    gateway_server: Server, tmp_path: Path
) -> None:
    marker = str(tmp_path / "crashed-once")
    retry = {"max_attempts": 3, "delay_s": 0, "jitter": False, "retry_on": ["server_lost"]}
    with _http(gateway_server) as http:
        run = _run(
            http,
            {"tool": {"name": "fx.crash_once", "arguments": {"marker": marker}}, "retry": retry},
        )
        assert run["status"] == "completed", run
        assert run["attempts"] == 2
        assert run["result"]["structuredContent"] == {"result": "survived"}
        attempts = http.get(f"/api/v1/runs/{run['id']}/attempts").json()["attempts"]
        assert [a["failure"]["kind"] if a["failure"] else None for a in attempts] == [
            "server_lost",
            None,
        ]


def test_cancelling_a_tool_run_cancels_the_call_downstream(
    gateway_server: Server, tmp_path: Path
) -> None:
    marker = tmp_path / "hang"
    with _http(gateway_server) as http:
        tool = {"name": "fx.hang", "arguments": {"seconds": 120, "marker": str(marker)}}
        run_id = http.post("/api/v1/runs", json={"tool": tool}).json()["id"]
        started = Path(f"{marker}.started")
        deadline = time.monotonic() + 30
        while not started.exists() and time.monotonic() < deadline:  # the call reached the tool
            time.sleep(0.02)
        assert started.exists()
        http.delete(f"/api/v1/runs/{run_id}")
        run = http.get(f"/api/v1/runs/{run_id}", params={"wait": 30}).json()
        assert run["status"] == "cancelled"
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline:  # notifications/cancelled
            time.sleep(0.02)
        assert marker.read_text() == "cancelled"


def test_cli_call_detach_is_a_tool_run(gateway_server: Server) -> None:
    detached = gateway_server.cli(
        "call", "everything.echo", "--arg", "message=later", "--detach", "--retry", "2"
    )
    assert detached.returncode == 0, detached.stderr
    run_id = detached.stdout.strip()
    with _http(gateway_server) as http:
        run = http.get(f"/api/v1/runs/{run_id}", params={"wait": 30}).json()
    assert run["status"] == "completed", run
    assert run["retry"]["max_attempts"] == 2
    listed = gateway_server.cli("runs", "--tool", "everything.echo")
    assert listed.returncode == 0, listed.stderr
    assert run_id in listed.stdout
    assert "[tool] everything.echo" in listed.stdout
    shown = gateway_server.cli("show", run_id)
    assert shown.returncode == 0, shown.stderr
    assert '[tool] everything.echo {"message": "later"}' in shown.stdout
