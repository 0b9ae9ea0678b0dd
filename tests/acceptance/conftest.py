"""Fixtures that start a real ``mcpexec serve`` process on a loopback port with its own home."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from mcpexec.client import Client

MCPEXEC = str(Path(sys.executable).parent / "mcpexec")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    home: Path
    port: int
    workers: int
    extra_env: dict[str, str] = field(default_factory=dict)
    #: More ``mcpexec serve`` arguments (e.g. ``["--spool", DIR]``).
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return (self.home / "token").read_text().strip()

    def env(self) -> dict[str, str]:
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.home),
            "MCPEXEC_HOME": str(self.home),
            "MCPEXEC_URL": self.url,
            "MCPEXEC_POLL_S": "0.2",
            "MCPEXEC_HEARTBEAT_S": "0.5",
            "MCPEXEC_REAPER_S": "0.5",
            "MCPEXEC_KILL_GRACE_S": "0.5",
            # Debian's interpreters: a pyenv shim would fork helper processes that carry the
            # task's arguments (and so its marker) for a moment.
            "MCPEXEC_RUN_PATH": "/usr/bin:/bin",
        }
        env.update(self.extra_env)
        return env

    def start(self, timeout_s: float = 60.0) -> None:
        self.log_path = self.home / f"serve-{int(time.time() * 1000)}.log"
        with self.log_path.open("wb") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(
                [
                    MCPEXEC,
                    "serve",
                    "--port",
                    str(self.port),
                    "--workers",
                    str(self.workers),
                    *self.args,
                ],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)  # polling a port that is not open yet: there is no event to await
        raise RuntimeError(f"serve did not answer within {timeout_s}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise

    def client(self) -> Client:
        return Client(self.url, self.token)

    def cli(
        self, *args: str, timeout_s: float = 60.0, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [MCPEXEC, *args],
            env={**self.env(), "MCPEXEC_TOKEN": self.token, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )


def make_server(tmp_path: Path, workers: int = 4, **extra_env: str) -> Server:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return Server(home=home, port=free_port(), workers=workers, extra_env=extra_env)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = make_server(tmp_path)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    with server.client() as c:
        yield c


def sleeper(marker: str, seconds: int = 1000) -> str:
    """A shell fragment that sleeps in a process whose command line carries ``marker``."""
    return f"python3 -c 'import time; time.sleep({seconds})' {marker}"


def processes_with_marker(marker: str, *, wrappers: bool = True) -> list[int]:
    """Pids whose command line contains ``marker`` (our own test process excluded).
    ``wrappers=False`` leaves out the sandbox's bwrap processes (bwrap and its pid-1 init carry
    the task's argv too), counting only task processes."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            if not wrappers and cmdline.split(b"\0")[0].endswith(b"bwrap"):
                continue
            found.append(int(entry.name))
    return found


def wait_until_gone(marker: str, timeout_s: float) -> list[int]:
    """Poll /proc until no process carries ``marker``; returns the survivors at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        alive = processes_with_marker(marker)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")
