"""Helpers: real downstream MCP servers for the gateway tests (from ``scripts/mcp-servers``).

Each is found through its ``TEST_MCP_*`` variable, else in the script's default directory;
missing, a test skips locally and fails under ``CI=true`` (``tests/servers.py``).
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from mcpexec.gateway.config import parse_config
from mcpexec.gateway.gateway import Gateway
from servers import missing

HERE = Path(__file__).resolve().parent
FIXTURE = str(HERE / "fixture_server.py")
CACHE = Path(os.environ.get("MCP_SERVERS_DIR") or Path.home() / ".cache" / "mcpexec-mcp-servers")
_NPM = CACHE / "npm" / "node_modules" / "@modelcontextprotocol"
DEFAULTS = {
    "TEST_MCP_EVERYTHING": _NPM / "server-everything" / "dist" / "index.js",
    "TEST_MCP_FILESYSTEM": _NPM / "server-filesystem" / "dist" / "index.js",
    "TEST_MCP_MEMORY": _NPM / "server-memory" / "dist" / "index.js",
    "TEST_MCP_TIME": CACHE / "venv-time" / "bin" / "mcp-server-time",
    "TEST_MCP_GIT": CACHE / "venv-git" / "bin" / "mcp-server-git",
}


def server_path(variable: str) -> str:
    path = os.environ.get(variable, "").strip() or str(DEFAULTS[variable])
    if not Path(path).exists():
        missing(variable, f"{path} does not exist (run scripts/mcp-servers)")
    return path


def node() -> str:
    found = shutil.which("node")
    if found is None:
        missing("node", "'node' is not on PATH (run scripts/mcp-servers)")
    assert found is not None
    return found


def npm_server(variable: str, *args: str, **extra: Any) -> dict[str, Any]:
    return {"command": node(), "args": [server_path(variable), *args], **extra}


def fixture_server(**extra: Any) -> dict[str, Any]:
    return {"command": sys.executable, "args": [FIXTURE], **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def open_gateway(servers: dict[str, Any], **options: Any) -> AsyncIterator[Gateway]:
    """A started Gateway over ``{"mcpServers": servers}`` (every entry must parse)."""
    config = parse_config({"mcpServers": servers}, "test.json", options.pop("secrets", None))
    assert config.problems == ()
    options.setdefault("kill_grace_s", 0.5)
    async with Gateway(config, **options) as gateway:
        yield gateway


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait for a condition on the gateway's state (in-flight counts, pids, the catalog),
    which offers no event to await: checked every 10 ms, bounded by ``seconds``."""
    with anyio.fail_after(seconds):
        while not condition():  # noqa: ASYNC110 - nothing to await for these
            await anyio.sleep(0.01)


def venv_binds(script: str) -> list[str]:
    """What a console script of a venv needs read-only inside the sandbox: the venv and the
    Python it was made from (``home`` in its ``pyvenv.cfg``), as docs/gateway.md says."""
    venv = Path(script).resolve().parent.parent
    home = ""
    for line in (venv / "pyvenv.cfg").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home":
            home = value.strip()
    base = str(Path(home).resolve().parent) if home else ""
    return [str(venv), *([base] if base and not base.startswith("/usr") else [])]


def sandbox_user() -> tuple[int, int] | None:
    """Who a confined sandboxed server runs as: the settings' sandbox user when the tests run
    as root (as ``mcpexec serve`` would), else ``None`` (the tests' own user)."""
    from mcpexec.settings import Settings

    settings = Settings()
    return (settings.sandbox_uid, settings.sandbox_gid) if os.geteuid() == 0 else None


def give_to_sandbox(path: Path) -> Path:
    """Make ``path`` (a tree) the sandbox user's, as docs/gateway.md asks of ``writable``
    directories when serve runs as root; a no-op otherwise."""
    user = sandbox_user()
    if user is not None:
        for entry in (path, *path.rglob("*")):
            os.chown(entry, *user, follow_symlinks=False)
    return path


def npm_binds() -> list[str]:
    """What the npm reference servers need read-only: their node_modules (node is /usr/bin)."""
    return [str(CACHE / "npm")]


@asynccontextmanager
async def confined_gateway(
    servers: dict[str, Any], *, sandbox_default: bool = True, **options: Any
) -> AsyncIterator[Gateway]:
    """``open_gateway`` as ``mcpexec serve`` builds it: stdio servers sandboxed unless they opt
    out, each in a cgroup leaf with the runs' default limits (``ServerConfinement``)."""
    from mcpexec.server_confinement import ServerConfinement
    from mcpexec.settings import Settings

    if shutil.which("bwrap") is None:
        missing("bwrap", "'bwrap' is not on PATH (apt-get install bubblewrap)")
    confinement = ServerConfinement.from_settings(Settings())
    confinement.start()
    try:
        async with open_gateway(
            servers, confinement=confinement, sandbox_default=sandbox_default, **options
        ) as gateway:
            yield gateway
    finally:
        await confinement.stop()
