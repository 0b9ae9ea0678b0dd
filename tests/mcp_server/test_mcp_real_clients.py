"""Real MCP clients against real ``mcpexec mcp`` (stdio) and ``mcpexec serve`` (HTTP): the MCP
Inspector CLI, fastmcp with and without fastmcp-tasks, and the TypeScript SDK. Each runs in
its own process, installed by ``scripts/mcp-clients`` (skipped locally when absent, failed
under CI=true)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client, StdioServerParameters

from acceptance.conftest import Server, make_server
from mcpexec.mcp_server.common import EXECUTE_WAIT_S
from mcpexec.mcp_server.tasks_ext import TASK_LABEL

from .real_clients import HERE, fastmcp_python, inspector, node, ts_sdk

pytestmark = pytest.mark.anyio

MCPEXEC = str(Path(sys.executable).parent / "mcpexec")
TS_DEFAULT_TIMEOUT_S = 60.0  # DEFAULT_REQUEST_TIMEOUT_MSEC of @modelcontextprotocol/sdk


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = make_server(tmp_path_factory.mktemp("real-clients"), workers=2)
    srv.start()
    yield srv
    srv.stop()


def _env(home: Path) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": str(home), "MCPEXEC_HOME": str(home)}


async def _run(argv: list[str], home: Path, timeout_s: float = 120) -> Any:
    with anyio.fail_after(timeout_s):
        done = await anyio.run_process(argv, env=_env(home), check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def _target(transport: str, serve: Server, home: Path) -> list[str]:
    if transport == "stdio":
        return [MCPEXEC, "mcp", "-e", f"MCPEXEC_HOME={home}"]
    return [f"{serve.url}/mcp", "--header", f"Authorization: Bearer {serve.token}"]


@pytest.mark.parametrize("transport", ["stdio", "http"])
@pytest.mark.parametrize("era", ["modern", "auto", "legacy"])
async def test_inspector_cli_executes(
    serve: Server, tmp_path: Path, transport: str, era: str
) -> None:
    """``--protocol-era modern|auto`` opts in to the tasks extension: the Inspector then
    drives execute as a task and validates tasks/get strictly."""
    argv = [
        *inspector(),
        *_target(transport, serve, tmp_path / "home"),
        "--protocol-era",
        era,
        "--method",
        "tools/call",
        "--tool-name",
        "execute",
        "--tool-args-json",
        '{"shell": "echo inspected; exit 3"}',
        "--format",
        "json",
    ]
    answer = await _run(argv, tmp_path)
    outcome = answer["result"]["structuredContent"]
    assert (outcome["status"], outcome["exit_code"]) == ("failed", 3)
    assert outcome["stdout"] == "inspected\n"
    assert not answer["result"].get("isError")
    labels = await _labels(serve, transport, tmp_path / "home", outcome["run_id"])
    assert (TASK_LABEL in labels) is (era != "legacy")  # modern and auto ran it as a task


async def _labels(serve: Server, transport: str, home: Path, run_id: str) -> dict[str, str]:
    if transport == "http":
        headers = {"Authorization": f"Bearer {serve.token}"}
        async with httpx.AsyncClient(base_url=serve.url, headers=headers) as rest:
            labels: dict[str, str] = (await rest.get(f"/api/v1/runs/{run_id}")).json()["labels"]
        return labels
    server = StdioServerParameters(command=MCPEXEC, args=["mcp", "--no-worker"], env=_env(home))
    async with Client(server, read_timeout_seconds=60) as client:
        run = await client.call_tool("get_run", {"run_id": run_id})
    assert isinstance(run.structured_content, dict)
    found: dict[str, str] = run.structured_content["labels"]
    return found


async def test_inspector_strict_finds_no_schema_problems(tmp_path: Path) -> None:
    target = [MCPEXEC, "mcp", "-e", f"MCPEXEC_HOME={tmp_path / 'home'}"]
    argv = [*inspector(), *target, "--method", "tools/list", "--strict"]
    with anyio.fail_after(120):
        done = await anyio.run_process(argv, env=_env(tmp_path), check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert b"Issue:" not in done.stderr


@pytest.mark.parametrize("transport", ["stdio", "http"])
@pytest.mark.parametrize("mode", ["tasks", "plain"])
async def test_fastmcp_executes(serve: Server, tmp_path: Path, transport: str, mode: str) -> None:
    where, secret = (MCPEXEC, str(tmp_path / "home"))
    if transport == "http":
        where, secret = (f"{serve.url}/mcp", serve.token)
    argv = [str(fastmcp_python()), str(HERE / "fastmcp_client.py"), mode, transport, where, secret]
    out = await _run(argv, tmp_path)
    outcome = out["execute"]
    assert (outcome["status"], outcome["exit_code"]) == ("failed", 3)
    assert outcome["stdout"] == "from-fastmcp\n"
    if mode == "tasks":
        assert out["task_id"] == outcome["run_id"]  # it ran as a task


def test_execute_waits_less_than_the_typescript_default_timeout() -> None:
    assert EXECUTE_WAIT_S < TS_DEFAULT_TIMEOUT_S


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_typescript_sdk_follows_a_run_longer_than_its_request_timeout(
    serve: Server, tmp_path: Path, transport: str
) -> None:
    """The mechanism of a run longer than the client's timeout, at a smaller scale: the TS
    client is configured with a 4 s request timeout (its default is 60 s) and the run takes
    6 s. execute (wait_s 1.5) returns the run still running, get_run (wait_s 1.5) follows it
    to the end; no request comes near the client's timeout and the run is not cancelled."""
    where, secret = (MCPEXEC, str(tmp_path / "home"))
    if transport == "http":
        where, secret = (f"{serve.url}/mcp", serve.token)
    argv = [
        str(node()),
        str(HERE / "ts_client.mjs"),
        str(ts_sdk()),
        transport,
        where,
        secret,
        "4000",
        "sleep 6; echo long",
        "1.5",
    ]
    out = await _run(argv, tmp_path)
    assert out["first_status"] in ("pending", "running")
    assert out["polls"] >= 1
    assert (out["final"]["status"], out["final"]["attempts"]) == ("completed", 1)
    assert out["stdout"] == "long\n"
