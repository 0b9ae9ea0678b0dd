"""The exec wrapper stops a run whose server died before the run joined its cgroup (the
watchdog's kill cannot see a process that joins after it: issue 8's watchdog race)."""

from __future__ import annotations

import os
import resource
import subprocess
from pathlib import Path

import pytest

from executor_helpers import require
from mcpexec.executor.limits import exec_wrapper


@pytest.mark.parametrize("parent_alive", [True, False])
def test_exec_wrapper_stops_when_the_server_died_before_the_join(
    tmp_path: Path, parent_alive: bool
) -> None:
    """The watchdog's kill misses a process that joins the cgroup after it: the wrapper checks
    after the join that its parent is still the server, and stops otherwise. A server that died
    is simulated by a ``server_pid`` that is not the wrapper's parent."""
    procs = tmp_path / "cgroup.procs"  # a plain file stands in for the cgroup's
    server = os.getpid() if parent_alive else os.getpid() + 4_000_000  # beyond pid_max
    argv = exec_wrapper([(resource.RLIMIT_CORE, 0, 0)], [procs], server_pid=server)
    if argv is None:
        require("prlimit (util-linux) not installed")
    assert argv is not None
    proc = subprocess.run([*argv, "echo", "ran"], capture_output=True, timeout=10, check=False)
    assert procs.read_text() == "0\n"  # joined first
    if parent_alive:
        assert (proc.returncode, proc.stdout) == (0, b"ran\n")
    else:
        assert proc.returncode != 0
        assert proc.stdout == b""
