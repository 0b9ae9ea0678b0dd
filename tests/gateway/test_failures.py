"""The misbehaviours gateway users report, against the SDK fixture server (real processes):
a server killed mid-call, one that hangs, progress that keeps a call alive, floods, a tool list
that changes, full pools, leaked processes, a reload that leaves other servers' calls alone."""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from mcpexec.gateway.config import parse_config
from mcpexec.gateway.errors import (
    DownstreamUnavailable,
    InvalidArguments,
    PathOutsideSandbox,
    PoolExhausted,
    ServerLost,
    ToolError,
    ToolTimeout,
    UnknownTool,
)
from mcpexec.gateway.gateway import Gateway

from .helpers import fixture_server, open_gateway, until

pytestmark = pytest.mark.anyio


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_server_killed_mid_call_fails_at_once_and_restarts() -> None:
    async with open_gateway({"fx": fixture_server(timeout_s=60)}) as gateway:
        first_pid = (await gateway.call_tool("fx.pid", {})).structured["result"]
        tools_before = {t.qualified for t in gateway.catalog().tools()}
        with anyio.fail_after(10):  # far below the 60 s call timeout: no hang until it
            async with anyio.create_task_group() as tg:

                async def hanging() -> None:
                    with pytest.raises(ServerLost, match="lost during the call"):
                        await gateway.call_tool("fx.hang", {})

                tg.start_soon(hanging)
                await until(lambda: gateway.health()[0].in_flight > 0)
                os.kill(first_pid, signal.SIGKILL)
        # The next call waits for the restart, gets a new session, the same tools.
        second_pid = (await gateway.call_tool("fx.pid", {})).structured["result"]
        assert second_pid != first_pid
        [health] = gateway.health()
        assert health.restarts == 1
        assert health.state == "ready"
        assert "exited" in (health.last_error or "") or "closed" in (health.last_error or "")
        assert {t.qualified for t in gateway.catalog().tools()} == tools_before


async def test_crash_inside_a_call_is_server_lost() -> None:
    async with open_gateway({"fx": fixture_server()}) as gateway:
        with anyio.fail_after(10), pytest.raises(ServerLost):
            await gateway.call_tool("fx.crash", {"delay": 0.1})
        assert (await gateway.call_tool("fx.echo", {"message": "back"})).text() == "back"


async def test_hanging_tool_times_out() -> None:
    async with open_gateway({"fx": fixture_server(timeout_s=60)}) as gateway:
        with pytest.raises(ToolTimeout) as caught:
            await gateway.call_tool("fx.hang", {}, timeout_s=0.5)  # the caller's own timeout
        assert caught.value.code == "timeout"
        # The server is fine afterwards (the SDK sent notifications/cancelled downstream).
        assert (await gateway.call_tool("fx.echo", {"message": "ok"})).text() == "ok"


async def test_cancelling_the_caller_cancels_the_downstream_call(tmp_path: Path) -> None:
    marker = tmp_path / "cancelled"
    async with open_gateway({"fx": fixture_server()}) as gateway:
        await gateway.list_tools()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_call_quietly, gateway, "fx.hang", {"marker": str(marker)})
            await until(Path(f"{marker}.started").exists)  # the server is inside the call
            assert not marker.exists()
            tg.cancel_scope.cancel()
        # The server's handler saw notifications/cancelled and stopped (it wrote the marker).
        await until(marker.exists)
        assert marker.read_text() == "cancelled"
        assert gateway.health()[0].in_flight == 0
        assert (await gateway.call_tool("fx.echo", {"message": "still"})).text() == "still"


async def test_progress_resets_the_timeout_up_to_the_maximum() -> None:
    seen: list[float] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        seen.append(done)

    # 4 steps 0.5 s apart (2 s) outlive a 1.5 s timeout only because each one restarts it.
    async with open_gateway({"fx": fixture_server(timeout_s=1.5)}) as gateway:
        with pytest.raises(ToolTimeout):
            await gateway.call_tool(
                "fx.progress_then_hang", {"steps": 4, "interval": 0.5}, progress=progress
            )
    assert seen == [1, 2, 3, 4]
    # A maximum total stops it although progress would keep it alive for 25 s.
    seen.clear()
    config = fixture_server(timeout_s=2.0, max_total_s=3.0)
    async with open_gateway({"fx": config}) as gateway:
        with pytest.raises(ToolTimeout, match="at most 3 s"):
            await gateway.call_tool(
                "fx.progress_then_hang", {"steps": 50, "interval": 0.5}, progress=progress
            )
    assert 1 <= len(seen) < 50


async def test_flood_is_capped_with_a_note() -> None:
    async with open_gateway({"fx": fixture_server()}, max_output_bytes=10_000) as gateway:
        result = await gateway.call_tool("fx.flood", {"size": 2_000_000})
        assert result.truncated
        assert result.size > 2_000_000
        assert result.structured is None
        assert "output truncated" in result.content[-1]["text"]
        assert sum(len(b.get("text", "")) for b in result.content) <= 10_000
        assert not (await gateway.call_tool("fx.flood", {"size": 10})).truncated


async def test_a_message_past_the_bound_loses_the_server_not_the_gateway() -> None:
    async with open_gateway({"fx": fixture_server()}, max_message_bytes=100_000) as gateway:
        with pytest.raises(ServerLost, match="larger than 100000 bytes"):
            await gateway.call_tool("fx.flood", {"size": 1_000_000})
        assert (await gateway.call_tool("fx.echo", {"message": "fine"})).text() == "fine"


async def test_list_changed_refreshes_the_catalog() -> None:
    async with open_gateway({"fx": fixture_server()}) as gateway:
        await gateway.list_tools()
        with pytest.raises(UnknownTool):
            gateway.catalog().resolve("fx.newcomer")
        await gateway.call_tool("fx.add_tool", {"name": "newcomer"})
        await until(lambda: "fx.newcomer" in {t.qualified for t in gateway.catalog().tools()})
        assert (await gateway.call_tool("newcomer", {})).text() == "I am newcomer"


async def test_pagination_collects_every_page() -> None:
    paged = fixture_server(env={"FIXTURE_PAGE_SIZE": "2"})
    async with open_gateway({"paged": paged, "flat": fixture_server()}) as gateway:
        tools = await gateway.list_tools()
        paged_names = sorted(t.name for t in tools if t.server == "paged")
        flat_names = sorted(t.name for t in tools if t.server == "flat")
        assert len(paged_names) > 6
        assert paged_names == flat_names
        # Every bare name collides now: reported, and only server.tool resolves.
        assert {c.name for c in gateway.collisions} == set(flat_names)
        with pytest.raises(UnknownTool, match=r"paged\.echo"):
            await gateway.call_tool("echo", {"message": "x"})
        assert (await gateway.call_tool("echo", {"message": "x"}, server="flat")).text() == "x"


async def test_errors_have_stable_codes() -> None:
    async with open_gateway({"fx": fixture_server(tools={"deny": ["spawn_*"]})}) as gateway:
        with pytest.raises(ToolError) as failed:
            await gateway.call_tool("fx.fail", {"message": "boom"})
        assert failed.value.code == "tool_error"
        with pytest.raises(InvalidArguments) as bad:
            await gateway.call_tool("fx.tricky", {"payload": {}, "items": [], "choice": [1]})
        assert bad.value.details["field"] == "choice"
        with pytest.raises(InvalidArguments) as missing:
            await gateway.call_tool("fx.echo", {})
        assert missing.value.details["field"] == "message"
        with pytest.raises(UnknownTool):
            await gateway.call_tool("fx.spawn_stubborn_child", {})  # denied
        with pytest.raises(UnknownTool):
            await gateway.call_tool("nope.echo", {})


async def test_pool_exhausted_when_every_slot_is_busy() -> None:
    servers = {"fx": fixture_server(max_concurrency=2)}
    async with open_gateway(servers, acquire_timeout_s=0.3) as gateway:
        await gateway.list_tools()
        async with anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(_call_quietly, gateway, "fx.hang")
            await until(lambda: gateway.health()[0].in_flight >= 2)
            with pytest.raises(PoolExhausted) as full:
                await gateway.call_tool("fx.echo", {"message": "x"})
            assert "server 'fx'" in full.value.message
            tg.cancel_scope.cancel()
    async with open_gateway(
        {"fx": fixture_server()}, max_concurrent_executions=1, acquire_timeout_s=0.3
    ) as gateway:
        await gateway.list_tools()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_call_quietly, gateway, "fx.hang")
            await until(lambda: gateway.in_flight() >= 1)
            with pytest.raises(PoolExhausted, match="max_concurrent_executions"):
                await gateway.call_tool("fx.echo", {"message": "x"})
            tg.cancel_scope.cancel()


async def _call_quietly(
    gateway: Gateway, name: str, arguments: dict[str, Any] | None = None
) -> None:
    await gateway.call_tool(name, arguments or {})


async def test_no_process_outlives_close_not_even_a_stubborn_child() -> None:
    async with open_gateway({"fx": fixture_server(processes=2, eager=True)}) as gateway:
        await until(lambda: len(gateway.health()[0].pids) == 2)
        child = (await gateway.call_tool("fx.spawn_stubborn_child", {})).structured["result"]
        pids = list(gateway.health()[0].pids)
        assert psutil.Process(child).status() != psutil.STATUS_ZOMBIE
        assert os.getpgid(child) in pids  # in its server's group
    assert all(_gone(pid) for pid in [*pids, child])


async def test_a_crashed_servers_children_die_with_it() -> None:
    async with open_gateway({"fx": fixture_server()}) as gateway:
        child = (await gateway.call_tool("fx.spawn_stubborn_child", {})).structured["result"]
        with pytest.raises(ServerLost):
            await gateway.call_tool("fx.crash", {})
        await gateway.call_tool("fx.echo", {"message": "restarted"})
        assert _gone(child)


async def test_reload_restarts_what_changed_and_spares_calls_in_flight() -> None:
    old = parse_config({"mcpServers": {"a": fixture_server(), "b": fixture_server()}}, "x")
    async with open_gateway({"a": fixture_server(), "b": fixture_server()}) as gateway:
        await gateway.list_tools()
        b_pid = (await gateway.call_tool("b.pid", {})).structured["result"]
        assert gateway.config.servers == old.servers
        new = parse_config(
            {"mcpServers": {"a": fixture_server(), "c": fixture_server(timeout_s=5)}}, "y"
        )
        async with anyio.create_task_group() as tg:
            results: list[str] = []

            async def slow_on_a() -> None:
                results.append((await gateway.call_tool("a.hang", {"seconds": 1.0})).text())

            tg.start_soon(slow_on_a)
            await until(lambda: gateway.in_flight() >= 1)
            diff = await gateway.reload(new)
        assert results == ["woke"]  # the unchanged server's call finished
        assert (diff.added, diff.removed, diff.unchanged) == (("c",), ("b",), ("a",))
        assert _gone(b_pid)
        assert (await gateway.call_tool("c.echo", {"message": "new"})).text() == "new"
        with pytest.raises(UnknownTool):
            await gateway.call_tool("b.echo", {"message": "x"})


async def test_a_server_that_cannot_start_fails_its_calls_and_spares_the_others() -> None:
    servers = {"broken": {"command": "/nonexistent/mcp-server"}, "fx": fixture_server()}
    async with open_gateway(servers) as gateway:
        tools = await gateway.list_tools()
        assert {t.server for t in tools} == {"fx"}
        broken = next(h for h in gateway.health() if h.name == "broken")
        assert broken.state == "failed"
        assert "FileNotFoundError" in (broken.last_error or "")
        with pytest.raises(DownstreamUnavailable, match="FileNotFoundError"):
            await gateway.call_tool("broken.anything", {}, server=None)
        assert (await gateway.call_tool("fx.echo", {"message": "fine"})).text() == "fine"


async def test_fs_is_in_the_same_catalog(tmp_path: Path) -> None:
    (tmp_path / "note.txt").write_text("inside")
    async with open_gateway({"fx": fixture_server()}, sandbox_directory=tmp_path) as gateway:
        names = {t.qualified for t in await gateway.list_tools()}
        assert {"fs.read_text_file", "fx.echo"} <= names
        result = await gateway.call_tool("read_text_file", {"path": "note.txt"})
        assert result.structured["content"] == "inside"
        with pytest.raises(PathOutsideSandbox) as outside:
            await gateway.call_tool("fs.read_text_file", {"path": "/etc/passwd"})
        assert outside.value.message == (
            "Path validation failed: Path '/etc/passwd' is outside sandbox directory"
        )


async def test_spawn_wrapper_wraps_the_argv_of_stdio_servers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GATEWAY_LEAK_CHECK", "mcpexec's own")
    seen: list[list[str]] = []

    def wrapper(argv: Sequence[str]) -> list[str]:
        seen.append(list(argv))
        return ["/usr/bin/env", "WRAPPED_BY=sandbox", *argv]  # env execs the server itself

    async with open_gateway({"fx": fixture_server()}, spawn_wrapper=wrapper) as gateway:
        pid = (await gateway.call_tool("fx.pid", {})).structured["result"]
        assert psutil.Process(pid).environ().get("WRAPPED_BY") == "sandbox"
        assert "GATEWAY_LEAK_CHECK" not in psutil.Process(pid).environ()
    assert seen == [[fixture_server()["command"], *fixture_server()["args"]]]
