"""Stdio servers sandboxed by default, as ``mcpexec serve`` runs them (issue 14): every pinned
reference server works under bubblewrap with only the binds docs/gateway.md lists, inside a
cgroup leaf with memory and pids limits; it sees neither the host's home nor its network (unless
``"network": true``); ``"sandbox": false`` opts out and says so in the health."""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from mcpexec.gateway.gateway import ToolFailed
from mcpexec.gateway.servers import ServerHealth
from servers import missing

from .helpers import (
    CACHE,
    confined_gateway,
    give_to_sandbox,
    npm_binds,
    npm_server,
    sandbox_user,
    server_path,
    venv_binds,
)

pytestmark = pytest.mark.anyio
MIB = 1024 * 1024


def _tree(health: ServerHealth) -> list[psutil.Process]:
    assert health.pid is not None
    leader = psutil.Process(health.pid)
    return [leader, *leader.children(recursive=True)]


def _inner(health: ServerHealth) -> psutil.Process:
    """The server itself: the deepest process under bwrap."""
    return _tree(health)[-1]


def _cgroup_file(pid: int, controller: str, name: str) -> Path:
    """``name`` in the cgroup of ``pid`` that carries ``controller`` (v2 leaf or v1)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return Path("/sys/fs/cgroup") / controller / path.lstrip("/") / name
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return Path("/sys/fs/cgroup/unified") / line[3:].lstrip("/") / name
    raise AssertionError(f"no {controller} cgroup for {pid}")


def _limit(pid: int, controller: str) -> int:
    names = {"memory": ("memory.limit_in_bytes", "memory.max"), "pids": ("pids.max", "pids.max")}
    v1, v2 = names[controller]
    for name in (v1, v2):
        path = _cgroup_file(pid, controller, name)
        if path.exists():
            return int(path.read_text().strip())
    raise AssertionError(f"no {controller} limit file for {pid}")


def _under_home() -> set[str]:
    """What of the host's home the binds of these tests pass through: the servers' cache
    and the Python the venvs were made from, when they live there."""
    home = Path.home()
    found = set()
    for path in (CACHE, Path(sys.base_prefix).resolve()):
        if path.is_relative_to(home):
            found.add(path.relative_to(home).parts[0])
    return found


def _assert_sandboxed(health: ServerHealth) -> None:
    assert (health.sandbox, health.sandbox_from, health.network) == (True, "default", False)
    assert Path(psutil.Process(health.pid).exe()).name == "bwrap"
    assert health.limits is not None
    assert health.limits["memory_mb"] == 1024
    assert health.limits["pids"] == 256
    inner = _inner(health).pid
    # The limits are in force for the server process itself (its cgroups), as health says.
    if health.limits["memory_by"] != "not enforced":
        assert _limit(inner, "memory") == 1024 * MIB
    if health.limits["pids_by"] != "not enforced":
        assert _limit(inner, "pids") == 256
    # Its view of the filesystem (its mount namespace, seen through /proc/PID/root): of the
    # host's home only the directories its binds pass through, nothing else of /root or /home.
    root = Path(f"/proc/{inner}/root")
    home = root / str(Path.home()).lstrip("/")
    assert home.exists() == bool(_under_home())  # made by bwrap for the binds under it
    if home.exists():
        assert set(os.listdir(home)) <= _under_home()
    if (root / "home").exists():
        assert not any((root / "home").iterdir())
    assert not (root / "etc" / "shadow").exists()
    # A net namespace of its own: only loopback.
    assert os.readlink(f"/proc/{inner}/ns/net") != os.readlink("/proc/self/ns/net")
    devices = Path(f"/proc/{inner}/net/dev").read_text().splitlines()[2:]
    assert [d.split(":")[0].strip() for d in devices] == ["lo"]
    # The runs' seccomp denylist, loaded by bwrap for the server: one filter more than ours.
    assert health.limits["seccomp"] == "denylist"
    assert _seccomp_filters(inner) == _seccomp_filters(os.getpid()) + 1
    # Run by root, the server is the sandbox user on the host, with no capability left.
    user = sandbox_user()
    status = _status(inner)
    if user is not None:
        assert (health.limits["uid"], health.limits["gid"]) == user
        assert psutil.Process(inner).uids() == (user[0],) * 3
        assert psutil.Process(inner).gids() == (user[1],) * 3
        assert status["Groups"] == ""
    else:
        assert "uid" not in health.limits
    for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[caps], 16) == 0, caps
    assert status["NoNewPrivs"] == "1"


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def _seccomp_filters(pid: int) -> int:
    return int(_status(pid)["Seccomp_filters"])


async def test_everything_sandboxed_by_default_with_limits() -> None:
    server = npm_server("TEST_MCP_EVERYTHING", read_only=npm_binds())
    async with confined_gateway({"everything": server}) as gateway:
        assert (await gateway.call_tool("everything.echo", {"message": "x"})).text() == "Echo: x"
        [health] = gateway.health()
        _assert_sandboxed(health)
        assert health.limits is not None
        assert health.limits["memory_by"] != "not enforced"  # this host: cgroup v1 or v2
        assert health.limits["tree"] == "cgroup"
        pids = [p.pid for p in _tree(health)]
    for pid in pids:  # the tree dies with the gateway
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


async def test_filesystem_server_cannot_see_the_host_home(tmp_path: Path) -> None:
    box = tmp_path / "box"
    box.mkdir()
    (box / "in.txt").write_text("inside")
    secret = Path.home() / f".mcpexec-test-secret-{secrets.token_hex(4)}"
    secret.write_text("host-home-secret")
    try:
        # Told the host's home as an allowed directory, but only the box is bound.
        fs = npm_server(
            "TEST_MCP_FILESYSTEM",
            str(box),
            str(Path.home()),
            read_only=npm_binds(),
            writable=[str(give_to_sandbox(box))],
        )
        async with confined_gateway({"files": fs}) as gateway:
            ok = await gateway.call_tool("files.read_text_file", {"path": str(box / "in.txt")})
            assert "inside" in ok.text()
            with pytest.raises(Exception) as refused:  # noqa: PT011 - the server's own error
                await gateway.call_tool("files.read_text_file", {"path": str(secret)})
            assert "host-home-secret" not in str(refused.value)
            [health] = gateway.health()
            _assert_sandboxed(health)
    finally:
        secret.unlink()


async def test_memory_server_writes_only_its_bound_directory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "memory"
    data.mkdir()
    memory = npm_server(
        "TEST_MCP_MEMORY",
        env={"MEMORY_FILE_PATH": str(data / "m.jsonl")},
        read_only=npm_binds(),
        writable=[str(give_to_sandbox(data))],
    )
    async with confined_gateway({"memory": memory}) as gateway:
        await gateway.call_tool(
            "memory.create_entities",
            {"entities": [{"name": "Ada", "entityType": "person", "observations": ["math"]}]},
        )
        assert "Ada" in (await gateway.call_tool("memory.read_graph", {})).text()
        _assert_sandboxed(gateway.health()[0])
    assert "Ada" in (data / "m.jsonl").read_text()
    assert "not writable by the sandbox user" not in caplog.text


async def test_a_writable_directory_the_sandbox_user_cannot_write_is_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Run by root, the server is the sandbox user: a root-owned 0700 "writable" directory is
    # bound but closed to it (as root of a user namespace it would have been the owner), and
    # the log says which and how to fix it.
    user = sandbox_user()
    if user is None:
        missing("root", "the uid drop happens only when the tests run as root (CI does)")
    assert user is not None
    data = tmp_path / "root-only"
    data.mkdir(mode=0o700)
    memory = npm_server(
        "TEST_MCP_MEMORY",
        env={"MEMORY_FILE_PATH": str(data / "m.jsonl")},
        read_only=npm_binds(),
        writable=[str(data)],
    )
    with caplog.at_level(logging.WARNING, logger="mcpexec.gateway.session"):
        async with confined_gateway({"memory": memory}) as gateway:
            with pytest.raises(ToolFailed, match="EACCES"):
                await gateway.call_tool("memory.read_graph", {})
    uid, gid = user
    assert f"'memory': its writable {data} is not writable by the sandbox user {uid}:{gid}" in (
        caplog.text
    )
    assert f"chown -R {uid}:{gid} {data}" in caplog.text


async def test_time_server_sandboxed() -> None:
    script = server_path("TEST_MCP_TIME")
    server = {
        "command": script,
        "args": ["--local-timezone", "UTC"],
        "read_only": venv_binds(script),
    }
    async with confined_gateway({"time": server}) as gateway:
        result = await gateway.call_tool("time.get_current_time", {"timezone": "UTC"})
        assert result.structured["timezone"] == "UTC"
        _assert_sandboxed(gateway.health()[0])


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.txt").write_text("one\n")
    for args in (["init", "-q"], ["add", "a.txt"], ["-c", "user.name=t", "-c", "user.email=t@e",
                                                    "commit", "-qm", "first"]):  # fmt: skip
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    return repo


async def test_git_server_sandboxed(repo: Path) -> None:
    script = server_path("TEST_MCP_GIT")
    server = {
        "command": script,
        "args": ["--repository", str(repo)],
        "read_only": venv_binds(script),
        "writable": [str(give_to_sandbox(repo))],
    }
    async with confined_gateway({"git": server}) as gateway:
        log = await gateway.call_tool("git.git_log", {"repo_path": str(repo)})
        assert "first" in log.text()
        _assert_sandboxed(gateway.health()[0])


async def test_network_true_shares_the_host_network() -> None:
    server = npm_server("TEST_MCP_EVERYTHING", read_only=npm_binds(), network=True)
    async with confined_gateway({"e": server}) as gateway:
        await gateway.call_tool("e.echo", {"message": "x"})
        [health] = gateway.health()
        assert health.network is True
        inner = _inner(health).pid
        assert os.readlink(f"/proc/{inner}/ns/net") == os.readlink("/proc/self/ns/net")


async def test_opt_out_is_visible_and_still_in_a_leaf() -> None:
    server = npm_server("TEST_MCP_EVERYTHING", sandbox=False, limits={"memory_mb": 300})
    async with confined_gateway({"e": server}) as gateway:
        await gateway.call_tool("e.echo", {"message": "x"})
        [health] = gateway.health()
        assert (health.sandbox, health.sandbox_from) == (False, "config")
        assert health.to_dict()["sandbox"] is False
        assert Path(psutil.Process(health.pid).exe()).name != "bwrap"
        assert health.limits is not None
        assert health.limits["memory_mb"] == 300  # only what its config names
        assert "pids" not in health.limits


async def test_sandbox_default_off_runs_as_before() -> None:
    server = npm_server("TEST_MCP_EVERYTHING")
    async with confined_gateway({"e": server}, sandbox_default=False) as gateway:
        await gateway.call_tool("e.echo", {"message": "x"})
        [health] = gateway.health()
        assert (health.sandbox, health.sandbox_from) == (False, "default")
