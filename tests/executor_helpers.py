"""Shared by the executor and sandbox tests: one recording sink, the default limits, and the
rule that a missing layer skips locally but fails under ``CI=true`` (CI provides bwrap, seccomp,
cgroup v2 tree kill, cgroup memory/pids and root).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import BinaryIO

import pytest

from mcpexec.executor.base import EffectiveLimits
from mcpexec.models import Progress, Stream

CI = os.environ.get("CI") == "true"

#: Limits for executor tests that do not care (what ``worker.effective_limits`` would give a
#: spec without limits, minus the sandbox-only ones).
DEFAULT_LIMITS = EffectiveLimits(
    timeout_s=3600.0,
    cpu_s=None,
    memory_mb=None,
    file_size_mb=1024,
    open_files=1024,
    max_output_bytes=1024 * 1024,
)


def require(missing: str | None) -> None:
    """Skip when a layer the test needs is ``missing`` (the reason); fail instead under CI."""
    if missing is None:
        return
    if CI:
        pytest.fail(f"CI=true provides this layer, yet: {missing}")
    pytest.skip(missing)


def layer(missing: str | None) -> pytest.MarkDecorator:
    """``skipif`` for a missing layer, except under CI, where the test runs (and fails)."""
    return pytest.mark.skipif(missing is not None and not CI, reason=missing or "")


class SpawnMode:
    """How the executors a test starts spawn: through the spawn helper (the default of
    ``Settings.spawn_helper``) or the exec wrapper. Set per test by the ``spawn_mode`` fixture
    of the executor and sandbox suites, which run every test both ways."""

    helper: bool = True


SPAWN = SpawnMode()


def spawn_mode_fixture() -> object:
    """The autouse fixture those suites define (``spawn_mode = spawn_mode_fixture()``)."""

    @pytest.fixture(autouse=True, params=[True, False], ids=["helper", "wrapper"])
    def spawn_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
        monkeypatch.setattr(SPAWN, "helper", request.param)
        return bool(request.param)

    return spawn_mode


def helper_processes(server_pid: int) -> list[int]:
    """Live spawn helpers of the server ``server_pid`` (its pid is the helper's last argument)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            argv = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"spawn_helper.py") for a in argv) and str(server_pid).encode() in argv:
            found.append(int(name))
    return found


class RecordingSink:
    """Records what the executor reports. Keeps the last ``keep`` bytes of each stream;
    ``total`` counts every byte, ``writes`` the sink calls."""

    def __init__(self, keep: int = 1 << 20) -> None:
        self.keep = keep
        self.data: dict[Stream, bytearray] = {
            Stream.STDOUT: bytearray(),
            Stream.STDERR: bytearray(),
        }
        self.total: dict[Stream, int] = {Stream.STDOUT: 0, Stream.STDERR: 0}
        self.writes = 0
        self.progress_seen: list[Progress] = []
        self.artifacts: dict[str, bytes] = {}
        self._watch: list[tuple[bytes, asyncio.Event]] = []

    async def output(self, stream: Stream, data: bytes) -> None:
        self.writes += 1
        self.total[stream] += len(data)
        buf = self.data[stream]
        buf += data
        if len(buf) > self.keep:
            del buf[: len(buf) - self.keep]
        for needle, event in self._watch:
            if needle in buf:
                event.set()

    async def progress(self, progress: Progress) -> None:
        self.progress_seen.append(progress)

    async def artifact(self, name: str, file: BinaryIO, size: int) -> None:
        self.artifacts[name] = file.read(size)

    def text(self, stream: Stream = Stream.STDOUT) -> str:
        return self.data[stream].decode(errors="replace")

    @property
    def out(self) -> str:
        return self.text(Stream.STDOUT)

    @property
    def err(self) -> str:
        return self.text(Stream.STDERR)

    def when_output(self, needle: bytes) -> asyncio.Event:
        """Set once ``needle`` has appeared in the kept output (of either stream)."""
        event = asyncio.Event()
        self._watch.append((needle, event))
        return event
