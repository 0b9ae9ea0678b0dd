"""A real ``mcpexec mcp`` subprocess driven by the SDK client over stdio."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client, StdioServerParameters
from mcp import types as mt

from .subscribe_flow import Updates, subscribe_and_follow

pytestmark = pytest.mark.anyio

MCPEXEC = str(Path(sys.executable).parent / "mcpexec")


def params(home: Path, *args: str) -> StdioServerParameters:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "MCPEXEC_HOME": str(home),
        "MCPEXEC_POLL_S": "0.2",
        "MCPEXEC_HEARTBEAT_S": "0.5",
        "MCPEXEC_KILL_GRACE_S": "0.5",
        "MCPEXEC_WORKERS": "2",
    }
    return StdioServerParameters(command=MCPEXEC, args=["mcp", *args], env=env)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    home = tmp_path / "home"
    async with Client(params(home), read_timeout_seconds=60) as c:
        yield c


def data(result: mt.CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def test_execute_over_stdio(client: Client) -> None:
    result = data(await client.call_tool("execute", {"command": ["echo", "over stdio"]}))
    assert result["status"] == "completed"
    assert result["stdout"] == "over stdio\n"
    assert result["exit_code"] == 0


async def test_submit_and_poll_over_stdio(client: Client) -> None:
    run_id = data(await client.call_tool("submit_run", {"shell": "sleep 0.2; echo polled"}))[
        "run_id"
    ]
    with anyio.fail_after(30):
        while True:
            run = data(await client.call_tool("get_run", {"run_id": run_id, "wait_s": 5}))
            if run["status"] == "completed":
                break
    logs = data(await client.call_tool("read_logs", {"run_id": run_id}))
    assert logs["data"] == "polled\n"


async def test_progress_notifications_over_stdio(client: Client) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    result = await client.call_tool(
        "execute", {"shell": "sleep 2.5; echo ok"}, progress_callback=on_progress
    )
    assert data(result)["stdout"] == "ok\n"
    assert seen, "no notifications/progress arrived"
    assert seen == sorted(seen)


async def test_cancel_over_stdio_kills_the_process_tree(client: Client) -> None:
    # The task runs sandboxed (its own pid namespace and filesystem): find the grandchild on the
    # host by a unique argument instead of a pid it could write.
    marker = f"300.{secrets.randbelow(10**9):09d}"
    run_id = data(
        await client.call_tool(
            "submit_run",
            {"shell": f"sh -c 'sleep {marker} & wait' & wait", "timeout_s": 600},
        )
    )["run_id"]
    await eventually(lambda: bool(_pids_with_arg(marker)), 20)
    [grandchild] = _pids_with_arg(marker)
    data(await client.call_tool("cancel_run", {"run_id": run_id}))
    run = data(await client.call_tool("get_run", {"run_id": run_id, "wait_s": 30}))
    assert run["status"] == "cancelled"
    await eventually(lambda: not _alive(grandchild), 10)


def _pids_with_arg(arg: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                argv = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[:2] == [b"sleep", arg.encode()]:
                found.append(int(name))
    return found


async def test_stdout_carries_only_protocol(tmp_path: Path) -> None:
    """Run output and logs never reach the protocol stream (a stray line would break it)."""
    home = tmp_path / "home"
    async with Client(params(home, "--log-level", "debug"), read_timeout_seconds=60) as client:
        result = data(await client.call_tool("execute", {"shell": "echo noise; echo err >&2"}))
        assert result["stdout"] == "noise\n"
        tools = await client.list_tools()
    assert len(tools.tools) >= 9


def test_the_start_loads_only_what_answering_needs(tmp_path: Path) -> None:
    """Before ``initialize`` is answered (issue 8: at most 1 s) the process imports neither rich
    (the SDK's own logging set-up, 0.1 s) nor psycopg (0.2 s, for a store on SQLite)."""
    code = (
        "import sys\n"
        "from mcpexec.bootstrap import build_app\n"
        "from mcpexec.mcp_server.server import build_mcp_server\n"
        "from mcpexec.settings import Settings\n"
        f"build_mcp_server(build_app(Settings(home={str(tmp_path)!r})), local=True)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'rich', 'psycopg'}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout


async def eventually(condition: Callable[[], bool], timeout_s: float) -> None:
    """Poll a condition about another process (a file it writes, a pid it ends): there is no
    event to await across processes. Bounded by ``timeout_s``."""
    with anyio.fail_after(timeout_s):
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")
async def test_legacy_session_subscribes_over_stdio(tmp_path: Path) -> None:
    """resources/subscribe in a 2025-11-25 stdio session (runs unsandboxed, to see the gates)."""
    server = params(tmp_path / "home")
    assert server.env is not None
    server.env["MCPEXEC_SANDBOX"] = "none"
    updates = Updates()
    async with Client(
        server, mode="legacy", read_timeout_seconds=60, message_handler=updates
    ) as client:
        assert client.protocol_version == "2025-11-25"
        await subscribe_and_follow(client, updates, tmp_path / "gates")


# -- what happens to runs when the stdio client goes away (issue 9 item 10) ---------------------
async def _wait_running(client: Client, run_id: str) -> None:
    with anyio.fail_after(30):
        while data(await client.call_tool("get_run", {"run_id": run_id}))["status"] == "pending":
            await client.call_tool("get_run", {"run_id": run_id, "wait_s": 0.2})


async def test_closing_the_client_lets_a_running_attempt_finish(tmp_path: Path) -> None:
    """The SDK's client closes stdin, sends SIGTERM 2 s later and SIGKILL 2 s after that: the
    SIGTERM must not cut the drain short, so a run that ends within that time finishes once."""
    home = tmp_path / "home"
    async with Client(params(home), read_timeout_seconds=60) as client:
        run_id = data(await client.call_tool("submit_run", {"shell": "sleep 3; echo finished"}))[
            "run_id"
        ]
        await _wait_running(client, run_id)
    async with Client(params(home, "--no-worker"), read_timeout_seconds=60) as after:
        run = data(await after.call_tool("get_run", {"run_id": run_id}))
        logs = data(await after.call_tool("read_logs", {"run_id": run_id}))
    assert (run["status"], run["attempts"]) == ("completed", 1)
    assert logs["data"] == "finished\n"


async def test_mcp_hands_runs_to_a_serve_on_the_same_home(tmp_path: Path) -> None:
    from acceptance.conftest import make_server

    srv = make_server(tmp_path, workers=1)
    srv.start()
    try:
        url_file = srv.home / "url"
        if not url_file.exists():  # older serves do not write it; the format is one URL line
            url_file.write_text(srv.url + "\n")
        headers = {"Authorization": f"Bearer {srv.token}"}
        async with (
            Client(params(srv.home), read_timeout_seconds=60) as client,
            httpx.AsyncClient(base_url=srv.url, headers=headers) as rest,
        ):
            result = data(await client.call_tool("execute", {"command": ["echo", "served"]}))
            assert result["stdout"] == "served\n"
            answer = await rest.get("/api/v1/workers")  # while the mcp process is up
        assert answer.status_code == 200, answer.text
        listed = answer.json()
        pids = {w["pid"] for w in (listed["workers"] if isinstance(listed, dict) else listed)}
    finally:
        srv.stop()
    assert srv.proc is not None
    assert pids == {srv.proc.pid}  # no worker of the mcp process ever registered


async def test_print_config_gives_a_snippet_that_starts_the_server(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with anyio.fail_after(60):
        printed = await anyio.run_process(
            [MCPEXEC, "mcp", "--print-config", "--home", str(home)],
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},  # no venv on PATH
        )
    entry = json.loads(printed.stdout)["mcpServers"]["mcpexec"]
    assert Path(entry["command"]).is_absolute()
    assert entry["env"]["MCPEXEC_HOME"] == str(home)
    server = StdioServerParameters(
        command=entry["command"], args=entry["args"], env={**entry["env"], "PATH": "/usr/bin:/bin"}
    )
    async with Client(server, read_timeout_seconds=60) as client:
        result = data(await client.call_tool("execute", {"command": ["echo", "configured"]}))
    assert result["stdout"] == "configured\n"
