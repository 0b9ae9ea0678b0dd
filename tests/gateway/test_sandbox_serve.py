"""A real ``mcpexec serve`` with the default sandbox (``MCPEXEC_SANDBOX`` unset): its stdio
servers run sandboxed by default, an opt-out (``"sandbox": false``) shows in
``GET /api/v1/servers`` and ``mcpexec servers list|show``, and ``kill -9`` of serve leaves no
server process behind (bwrap ``--die-with-parent`` and the watchdog's ``cgroup.kill``)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from acceptance.conftest import Server, free_port

from .helpers import fixture_server, npm_binds, npm_server


def _wait_ready(srv: Server, names: set[str]) -> dict[str, Any]:
    # serve's own state, polled (no event crosses the process boundary), bounded.
    deadline = time.monotonic() + 60
    headers = {"Authorization": f"Bearer {srv.token}"}
    while True:
        found = httpx.get(f"{srv.url}/api/v1/servers", headers=headers, timeout=10).json()
        by_name = {s["name"]: s for s in found["servers"]}
        if all(by_name.get(n, {}).get("state") == "ready" for n in names):
            return by_name
        assert time.monotonic() < deadline, found
        time.sleep(0.05)


def _gone(pids: list[int], seconds: float = 20.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while True:
        left = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def test_serve_sandboxes_servers_by_default_and_kill_9_leaves_none(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    config = tmp_path / "mcp_servers.json"
    boxed = {**npm_server("TEST_MCP_EVERYTHING", read_only=npm_binds()), "start": "eager"}
    loose = {**npm_server("TEST_MCP_EVERYTHING", sandbox=False), "start": "eager"}
    # Opted out too, with a child that ignores SIGTERM and stdin close: after kill -9 of serve
    # only the cgroup leaf's kill (the watchdog) can reach it.
    stubborn = {**fixture_server(sandbox=False), "start": "eager"}
    servers = {"boxed": boxed, "loose": loose, "fx": stubborn}
    config.write_text(json.dumps({"mcpServers": servers}))
    srv = Server(
        home=home, port=free_port(), workers=0, extra_env={"MCPEXEC_MCP_CONFIG": str(config)}
    )
    srv.start()
    try:
        servers = _wait_ready(srv, {"boxed", "loose", "fx"})
        assert servers["boxed"]["sandbox"] is True
        assert servers["boxed"]["sandbox_from"] == "default"
        assert servers["boxed"]["limits"]["memory_mb"] == 1024
        assert servers["loose"]["sandbox"] is False
        assert servers["loose"]["sandbox_from"] == "config"
        assert "WITHOUT the sandbox" in srv.log()
        listed = srv.cli("servers", "list")
        assert listed.returncode == 0, listed.stderr
        row = next(line for line in listed.stdout.splitlines() if line.startswith("loose"))
        assert "OFF (config)" in row
        shown = srv.cli("servers", "show", "boxed")
        assert shown.returncode == 0, shown.stderr
        assert "sandbox:     bwrap" in shown.stdout
        assert "memory_mb=1024" in shown.stdout
        headers = {"Authorization": f"Bearer {srv.token}"}
        called = httpx.post(
            f"{srv.url}/api/v1/tools/fx.spawn_stubborn_child:call",
            json={"arguments": {}},
            headers=headers,
            timeout=30,
        )
        assert called.json()["status"] == "success", called.text
        child = int(called.json()["output"]["result"])
        assert psutil.Process(child).ppid() == servers["fx"]["pid"]
        pids: list[int] = [child]
        for entry in servers.values():
            if entry["pid"]:
                leader = psutil.Process(entry["pid"])
                pids += [leader.pid, *(c.pid for c in leader.children(recursive=True))]
        assert len(pids) >= 6  # the child; bwrap, its init, node; node; the fixture
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(30)
        assert _gone(pids) == []
    finally:
        srv.stop()
