"""A real ``mcpexec mcp`` subprocess driven by the SDK client over stdio."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp import types as mt
from subscribe_flow import Updates, subscribe_and_follow

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
