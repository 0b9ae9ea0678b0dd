"""Discovery and a call on each pinned reference server, through a Gateway, over stdio (npm
server-everything, -filesystem, -memory; PyPI mcp-server-time, mcp-server-git) and over
Streamable HTTP (server-everything's own HTTP mode, and the SDK fixture server)."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import free_port, node, npm_server, open_gateway, server_path

pytestmark = pytest.mark.anyio


async def test_everything_tools_progress_and_errors() -> None:
    async with open_gateway({"everything": npm_server("TEST_MCP_EVERYTHING")}) as gateway:
        names = {t.qualified for t in await gateway.list_tools()}
        assert {"everything.echo", "everything.get-sum", "everything.get-env"} <= names
        result = await gateway.call_tool("everything.echo", {"message": "hello"})
        assert result.text() == "Echo: hello"
        assert (await gateway.call_tool("get-sum", {"a": 2, "b": 3})).text().endswith("is 5.")
        seen: list[tuple[float, float | None]] = []

        async def progress(done: float, total: float | None, message: str | None) -> None:
            seen.append((done, total))

        done = await gateway.call_tool(
            "trigger-long-running-operation", {"duration": 0.6, "steps": 3}, progress=progress
        )
        assert "completed" in done.text()
        assert seen == [(1, 3), (2, 3), (3, 3)]
        [health] = gateway.health()
        assert health.state == "ready"
        assert health.pid is not None
        assert health.tool_count == len(names)


async def test_everything_env_gets_only_configured_variables_and_secrets() -> None:
    server = npm_server("TEST_MCP_EVERYTHING", env={"GREETING": "${SECRET_GREETING}"})
    async with open_gateway({"e": server}, secrets={"SECRET_GREETING": "s3cr3t"}) as gateway:
        text = (await gateway.call_tool("e.get-env", {})).text()
        assert "s3cr3t" in text
        assert "MCPEXEC_" not in text
        assert "PYTEST_CURRENT_TEST" not in text  # mcpexec's own environment stays home


async def test_filesystem_server(tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_text("hi there")
    fs = npm_server("TEST_MCP_FILESYSTEM", str(tmp_path))
    async with open_gateway({"files": fs}) as gateway:
        tools = {t.name for t in await gateway.list_tools()}
        assert {"read_text_file", "list_directory", "write_file"} <= tools
        result = await gateway.call_tool(
            "files.read_text_file", {"path": str(tmp_path / "hello.txt")}
        )
        assert "hi there" in result.text()


async def test_memory_server(tmp_path: Path) -> None:
    memory = npm_server("TEST_MCP_MEMORY", env={"MEMORY_FILE_PATH": str(tmp_path / "m.jsonl")})
    async with open_gateway({"memory": memory}) as gateway:
        await gateway.call_tool(
            "memory.create_entities",
            {"entities": [{"name": "Ada", "entityType": "person", "observations": ["math"]}]},
        )
        graph = await gateway.call_tool("memory.read_graph", {})
        assert "Ada" in graph.text()


async def test_time_server() -> None:
    time_server = {"command": server_path("TEST_MCP_TIME"), "args": ["--local-timezone", "UTC"]}
    async with open_gateway({"time": time_server}) as gateway:
        result = await gateway.call_tool("time.get_current_time", {"timezone": "UTC"})
        assert result.structured["timezone"] == "UTC"


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)

    git("init", "-q")
    (repo / "a.txt").write_text("one\n")
    git("add", "a.txt")
    git("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "first")
    return repo


async def test_git_server(git_repo: Path) -> None:
    repo = git_repo
    git = {"command": server_path("TEST_MCP_GIT"), "args": ["--repository", str(repo)]}
    async with open_gateway({"git": git}) as gateway:
        assert "git.git_log" in {t.qualified for t in await gateway.list_tools()}
        log = await gateway.call_tool("git.git_log", {"repo_path": str(repo)})
        assert "first" in log.text()


@pytest.fixture
def everything_http() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [node(), server_path("TEST_MCP_EVERYTHING"), "streamableHttp"],
        env={"PORT": str(port), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if b"listening on port" in line:
                break
        else:
            pytest.fail("server-everything (streamableHttp) did not start")
        drain = threading.Thread(target=proc.stderr.read, daemon=True)
        drain.start()
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()


async def test_everything_over_streamable_http(everything_http: str) -> None:
    async with open_gateway({"remote": {"type": "http", "url": everything_http}}) as gateway:
        assert "remote.echo" in {t.qualified for t in await gateway.list_tools()}
        # One session, reused: many calls, no new initialize between them.
        for i in range(5):
            result = await gateway.call_tool("remote.echo", {"message": f"m{i}"})
            assert result.text() == f"Echo: m{i}"
        [health] = gateway.health()
        assert (health.transport, health.state, health.pid) == ("http", "ready", None)


async def test_fixture_over_streamable_http(http_fixture: str) -> None:
    config = {"type": "streamable-http", "url": http_fixture, "headers": {"X-Test": "1"}}
    async with open_gateway({"remote": config}) as gateway:
        result = await gateway.call_tool("remote.echo", {"message": "over http"})
        assert result.structured == {"result": "over http"}
