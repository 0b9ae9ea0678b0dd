"""The watchdog's kill of a dead server's cgroups catches a process that joins a leaf just after
the first ``cgroup.kill`` (it was still in the exec wrapper when the server died): issue 8's
watchdog race, seen once under load in ``test_07_server_killed_mid_run_leaves_nothing``."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from executor_helpers import layer
from mcpexec.executor import cgroup
from mcpexec.executor.cgroup import CGROUP_DIR, find_cgroup2_mount, kill_cgroup

MOUNT = find_cgroup2_mount()
pytestmark = [pytest.mark.timeout(30), layer(None if MOUNT else "no writable cgroup2 mount")]


def test_a_process_joining_between_the_kill_and_the_rmdir_is_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert MOUNT is not None
    instance = MOUNT / CGROUP_DIR / f"test-race-{os.getpid()}"
    leaf = instance / "run.1"
    leaf.mkdir(parents=True)
    late = subprocess.Popen(["sleep", "1000"])  # the run, still in its wrapper: not joined yet
    real_remove = cgroup.remove_cgroup
    joined: list[bool] = []

    def remove_after_the_late_join(path: Path) -> bool:
        if not joined:  # the wrapper's `echo 0 > cgroup.procs` lands right now
            (leaf / "cgroup.procs").write_text(str(late.pid))
            joined.append(True)
        return real_remove(path)

    monkeypatch.setattr(cgroup, "remove_cgroup", remove_after_the_late_join)
    try:
        assert kill_cgroup(instance, timeout=5.0)
        assert joined
        assert late.wait(timeout=5) == -9
        assert not instance.exists()
    finally:
        late.kill()
        late.wait()
        monkeypatch.undo()
        cgroup.remove_cgroup(instance)
