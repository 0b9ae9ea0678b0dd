"""Fixtures for the sandbox abuse suite: a started SandboxExecutor (the real bwrap, cgroups and
tmpfs of this host), the shared recording sink, and the "nothing left behind" check every case
ends with.

A layer the host lacks makes the tests needing it skip with the reason (the fixture first asserts
the executor *reports* the degraded layer in every attempt's ``isolation``), except under
``CI=true``: CI provides every layer (bwrap, seccomp, cgroup v2 kill, cgroup memory/pids, root), so
there a missing layer fails the test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from executor_helpers import SPAWN, RecordingSink, require, spawn_mode_fixture
from mcpexec.errors import SandboxUnavailable
from mcpexec.executor.base import ExecRequest, ExecResult
from mcpexec.executor.cgroup import LimitGroups
from mcpexec.executor.probe import probe
from mcpexec.executor.procfs import INSTANCE_VAR, pids_with_env
from mcpexec.executor.sandbox import SandboxConfig, SandboxExecutor
from mcpexec.models import ExecSpec
from mcpexec.settings import Settings
from mcpexec.worker import effective_limits

SETTINGS = Settings(home=Path("/nonexistent"), kill_grace_s=0.5)
PROBE = probe("default")
NO_BWRAP = PROBE.bwrap_error
ROOT = os.geteuid() == 0
NOT_ROOT = None if ROOT else "the server does not run as root"


spawn_mode = spawn_mode_fixture()  # every test with the spawn helper and with the exec wrapper

#: The shared recording sink (``tests/executor_helpers.py``), under the name the cases use.
Sink = RecordingSink


def request(spec: dict[str, Any], run_id: str = "run", **limits: Any) -> ExecRequest:
    es = ExecSpec.model_validate(spec)
    eff = effective_limits(es, SETTINGS)
    if limits:
        eff = replace(eff, **limits)
    return ExecRequest(run_id, 1, es, eff)


async def execute(
    ex: SandboxExecutor,
    spec: dict[str, Any],
    cancel: asyncio.Event | None = None,
    timeout: float = 60,
    sink: RecordingSink | None = None,
    **limits: Any,
) -> tuple[ExecResult, RecordingSink]:
    sink = sink or Sink()
    req = request(spec, **limits)
    result = await asyncio.wait_for(ex.execute(req, sink, cancel or asyncio.Event()), timeout)
    return result, sink


def cgroup_children(ex: SandboxExecutor) -> list[str]:
    """Leftover attempt cgroups of this executor (v2 leaves and v1 limit groups)."""
    found = []
    mech = ex.mechanism
    inst = getattr(mech, "instance", None)
    if isinstance(inst, Path) and inst.is_dir():
        found += [str(p) for p in inst.iterdir() if p.is_dir()]
    groups: LimitGroups | None = ex.limit_groups
    if groups is not None:
        for d in groups.v1.values():
            found += [str(p) for p in d.iterdir() if p.is_dir()]
    return found


def processes_with_arg(needle: str) -> list[int]:
    """Host pids whose command line contains ``needle`` (this process excluded)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
        except OSError:
            continue
        if needle.encode() in cmdline:
            found.append(int(name))
    return found


def sleeping(marker: str) -> list[int]:
    """Pids of the run's own ``sleep MARKER`` (not of wrappers whose argv merely mentions it)."""
    found = []
    for pid in processes_with_arg(marker):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes() == f"sleep\0{marker}\0".encode():
                found.append(pid)
        except OSError:
            continue
    return found


async def assert_clean(ex: SandboxExecutor, marker: str | None = None) -> None:
    """Nothing of any run is left: no process of a run (environ marker of this executor, and the
    argv ``marker`` if given), no attempt cgroup, no workdir, and the executor still answers.
    The remains of returned attempts are removed by the cleanup thread: wait for it first."""
    await ex.settle()
    assert pids_with_env(INSTANCE_VAR, ex.instance_id) == {}
    if marker is not None:
        assert processes_with_arg(marker) == []
    assert cgroup_children(ex) == []
    leftovers = sorted(p.name for p in ex.instance_dir.iterdir())
    assert leftovers == ["owner"], leftovers
    result, sink = await execute(ex, {"command": ["echo", "still here"]})
    assert result.succeeded, result
    assert sink.out == "still here\n"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _started(config: SandboxConfig, **kwargs: Any) -> SandboxExecutor:
    if NO_BWRAP:
        with pytest.raises(SandboxUnavailable, match="bwrap"):
            await SandboxExecutor(Path("/tmp/mcpexec-sandbox"), config).start()
        require(f"bwrap unusable here (and the executor refuses to start): {NO_BWRAP}")
    home = Path(kwargs.pop("home"))
    root_dir = Path("/tmp/mcpexec-sandbox") if ROOT else home / "work"
    kwargs.setdefault("spawn_helper", SPAWN.helper)
    ex = SandboxExecutor(root_dir, config, **kwargs)
    await ex.start()
    assert (ex.spawner is not None) == SPAWN.helper  # the helper started (no silent fallback)
    return ex


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[SandboxExecutor]:
    ex = await _started(
        SandboxConfig(),
        home=tmp_path,
        secrets={"API_TOKEN": "tok-9f8e7d6c5b4a-canary", "OTHER": "other-secret-value"},
    )
    try:
        yield ex
    finally:
        await ex.stop()
    assert pids_with_env(INSTANCE_VAR, ex.instance_id) == {}
    assert not ex.instance_dir.exists()


async def need(ex: SandboxExecutor, layer: str) -> None:
    """Skip unless ``layer`` (memory, pids, disk, seccomp) works here; when it does not, first
    check that an attempt reports the degraded layer in its ``isolation``."""
    p = ex.probe
    assert p is not None
    missing = {
        "memory": p.limits.memory is None,
        "pids": p.limits.pids is None,
        "disk": p.disk_error is not None,
        "seccomp": p.seccomp_error is not None,
    }[layer]
    if missing:
        result, _ = await execute(ex, {"command": ["true"]})
        expected = {
            "memory": "memory=rlimit-as",
            "pids": "pids=rlimit-nproc",
            "disk": "disk=UNLIMITED",
            "seccomp": "NO-seccomp",
        }[layer]
        assert expected in (result.isolation or "")
        require(f"this host has no usable {layer} layer: {p.degraded}")


def which(prog: str) -> str:
    path = shutil.which(prog, path="/usr/bin:/bin")
    if path is None:
        require(f"{prog} not installed")
    assert path is not None
    return path
