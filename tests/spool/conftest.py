"""Fixtures for the spool: a real App on a real SQLite file with the real executor (sandbox
``none``: the sandbox is not what these tests are about), a running ``Spool`` over a directory
in ``tmp_path``, and waits that await inotify events on the file in question (bounded)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import watchfiles

from mcpexec.app import App
from mcpexec.settings import Settings
from mcpexec.spool.daemon import Spool, spool_running
from mcpexec.spool.standalone import build_app

MCPEXEC = str(Path(sys.executable).parent / "mcpexec")

BASE_ENV = {
    "MCPEXEC_SANDBOX": "none",
    "MCPEXEC_POLL_S": "0.05",
    "MCPEXEC_HEARTBEAT_S": "0.2",
    "MCPEXEC_REAPER_S": "0.2",
    "MCPEXEC_KILL_GRACE_S": "0.5",
    "MCPEXEC_SPOOL_RESCAN_S": "0.5",
    "MCPEXEC_RUN_PATH": "/usr/bin:/bin",
}


def make_settings(home: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "home": home,
        "sandbox": "none",
        "poll_s": 0.05,
        "heartbeat_s": 0.2,
        "reaper_s": 0.2,
        "kill_grace_s": 0.5,
        "run_path": "/usr/bin:/bin",
        "workers": 4,
        "spool_rescan_s": 0.5,
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def engine(home: Path, **overrides: Any) -> AsyncIterator[App]:
    app = build_app(make_settings(home, **overrides))
    await app.open()
    await app.start_background(workers=app.settings.workers)
    try:
        yield app
    finally:
        await asyncio.wait_for(app.close(), 30)


@asynccontextmanager
async def running(app: App, root: Path, **kwargs: Any) -> AsyncIterator[Spool]:
    async with asyncio.timeout(120), spool_running(app, root, **kwargs) as spool:
        yield spool


def drop(root: Path, name: str, content: str | bytes | dict[str, Any]) -> Path:
    """Submit the documented way: write a dotfile in pending/, then rename it."""
    if isinstance(content, dict):
        content = json.dumps(content)
    data = content.encode() if isinstance(content, str) else content
    pending = root / "pending"
    pending.mkdir(parents=True, exist_ok=True)
    tmp = pending / f".{name}.tmp"
    tmp.write_bytes(data)
    os.rename(tmp, pending / name)
    return pending / name


async def wait_path(path: Path, timeout_s: float = 30.0, *, gone: bool = False) -> None:
    """Until ``path`` exists (or is gone), awaiting inotify events on its directory; the
    watcher's own timeout re-checks, so an event before the watch started is not missed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s

    def done() -> bool:
        return os.path.lexists(path) != gone

    if done():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    async for _ in watchfiles.awatch(
        path.parent,
        step=5,
        debounce=50,
        rust_timeout=200,
        yield_on_timeout=True,
        recursive=False,
        watch_filter=None,
    ):
        if done():
            return
        if loop.time() > deadline:
            break
    what = "to go" if gone else "to appear"
    raise AssertionError(f"{path} did not {what} within {timeout_s}s")


async def wait_log(root: Path, text: str, timeout_s: float = 30.0, count: int = 1) -> None:
    """Until daemon.log has ``count`` lines containing ``text`` (awaiting its inotify events)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    path = root / "daemon.log"

    def found() -> bool:
        return path.exists() and sum(text in line for line in log_lines(root)) >= count

    if found():
        return
    async for _ in watchfiles.awatch(
        root, step=5, debounce=50, rust_timeout=200, yield_on_timeout=True, recursive=False
    ):
        if found():
            return
        if loop.time() > deadline:
            break
    raise AssertionError(f"no line with {text!r} in {path} within {timeout_s}s")


def result_of(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def log_lines(root: Path) -> list[str]:
    return (root / "daemon.log").read_text().splitlines()


class SpoolProcess:
    """A real ``mcpexec spool run DIR`` process on its own home."""

    def __init__(self, root: Path, home: Path, *args: str, **env: str) -> None:
        self.root, self.home = root, home
        self.args = list(args)  # more ``spool run`` options (e.g. --drain)
        self.env = {
            "PATH": os.environ["PATH"],
            "HOME": str(home),
            "MCPEXEC_HOME": str(home),
            **BASE_ENV,
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = home / f"spool-{os.getpid()}-{id(self)}.log"

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(
                [MCPEXEC, "spool", "run", str(self.root), *self.args],
                env=self.env,
                stdout=out,
                stderr=out,
            )

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


@pytest.fixture
def spool_procs() -> Iterator[list[SpoolProcess]]:
    procs: list[SpoolProcess] = []
    yield procs
    for proc in procs:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.stop(signal.SIGKILL)
