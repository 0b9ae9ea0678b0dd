"""Stdio servers under bubblewrap (``"sandbox": true``): a real server-everything and
server-filesystem (npm) see only the paths their config lists, no host ``/tmp``, no network
namespace of the host, and die with the gateway like unsandboxed ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import psutil
import pytest

from mcpexec.gateway.errors import FsError
from servers import missing

from .helpers import CACHE, npm_server, open_gateway

pytestmark = pytest.mark.anyio


@pytest.fixture
def bwrap() -> str:
    found = shutil.which("bwrap")
    if found is None:
        missing("bwrap", "'bwrap' is not on PATH (apt-get install bubblewrap)")
    assert found is not None
    return found


async def test_everything_runs_sandboxed(bwrap: str, tmp_path: Path) -> None:
    (tmp_path / "host-secret.txt").write_text("do not read")
    server = npm_server("TEST_MCP_EVERYTHING", sandbox=True, read_only=[str(CACHE)])
    async with open_gateway({"e": server}) as gateway:
        assert (await gateway.call_tool("e.echo", {"message": "boxed"})).text() == "Echo: boxed"
        env = (await gateway.call_tool("e.get-env", {})).text()
        assert '"HOME": "/tmp"' in env
        [health] = gateway.health()
        assert health.pid is not None
        leader = psutil.Process(health.pid)
        assert Path(leader.exe()).name == "bwrap"
        children = leader.children(recursive=True)
        assert children
        pids = [health.pid, *(c.pid for c in children)]
    for pid in pids:  # closed with the gateway: bwrap and everything inside it
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


async def test_filesystem_server_sees_only_what_is_bound(bwrap: str, tmp_path: Path) -> None:
    box, other = tmp_path / "box", tmp_path / "other"
    box.mkdir()
    other.mkdir()
    (box / "in.txt").write_text("inside")
    (other / "out.txt").write_text("host-only-contents")
    # The server itself is told both directories; the sandbox binds only the box.
    server = npm_server(
        "TEST_MCP_FILESYSTEM",
        str(box),
        str(other),
        sandbox=True,
        read_only=[str(CACHE)],
        writable=[str(box)],
    )
    async with open_gateway({"files": server}) as gateway:
        inside = await gateway.call_tool("files.read_text_file", {"path": str(box / "in.txt")})
        assert "inside" in inside.text()
        await gateway.call_tool(
            "files.write_file", {"path": str(box / "new.txt"), "content": "written"}
        )
        assert (box / "new.txt").read_text() == "written"
        with pytest.raises(Exception) as refused:  # noqa: PT011 - the server's own error
            await gateway.call_tool("files.read_text_file", {"path": str(other / "out.txt")})
        assert "host-only-contents" not in str(refused.value)  # the directory is not there
        assert not isinstance(refused.value, FsError)
