"""Tree-kill mechanisms: a :class:`ProcessTree` per attempt, a :class:`TreeMechanism` per executor.

See :mod:`mcpexec.executor.tree` for the two mechanisms (cgroup v2, environ sweep), their
guarantees and the fallback's limitation. ``choose_mechanism`` picks one at start-up.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mcpexec.executor.tree import (
    CGROUP_DIR,
    INSTANCE_VAR,
    POLL_S,
    RUN_TOKEN_VAR,
    cgroup_populated,
    find_cgroup2_mount,
    kill_cgroup,
    owner_alive,
    parse_instance_id,
    pids_with_env,
    remove_cgroup,
    sweep_env,
)

# --- per-attempt trees -------------------------------------------------------------------------


class ProcessTree(abc.ABC):
    """The processes of one attempt. ``terminate`` and ``kill`` are synchronous syscalls, usable
    from a ``CancelledError`` handler."""

    procs_fd: int | None = None  # passed to the child, which writes "0" to join the cgroup
    procs_path: Path | None = None  # the same file, for the exec wrapper (limits.exec_wrapper)

    def __init__(self) -> None:
        self.pgid: int | None = None

    def attach(self, pid: int) -> None:
        self.pgid = pid  # the child is a session leader: its pid is its process group id
        self.release_child_fd()

    def release_child_fd(self) -> None:
        if self.procs_fd is not None:
            os.close(self.procs_fd)
            self.procs_fd = None

    def _killpg(self, sig: int) -> None:
        if self.pgid is not None:
            with contextlib.suppress(OSError):
                os.killpg(self.pgid, sig)

    @abc.abstractmethod
    def terminate(self) -> None:
        """SIGTERM every member (best effort: a SIGKILL sweep always follows)."""

    @abc.abstractmethod
    def kill(self) -> None:
        """SIGKILL every member, race-free against forks."""

    @abc.abstractmethod
    def empty(self) -> bool: ...

    async def wait_empty(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.empty():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(self.poll_s)
        return True

    poll_s = POLL_S

    def cpu_seconds(self) -> float | None:
        """CPU time used by the whole tree, when the mechanism can tell."""
        return None

    @property
    def cgroup_path(self) -> Path | None:
        """The attempt's cgroup v2 leaf, if the mechanism has one."""
        return None

    def close(self) -> None:
        self.release_child_fd()


class CgroupTree(ProcessTree):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        path.mkdir(mode=0o755)
        self.procs_path = path / "cgroup.procs"
        self.procs_fd = os.open(self.procs_path, os.O_WRONLY | os.O_CLOEXEC)

    def terminate(self) -> None:
        self._killpg(signal.SIGTERM)
        with contextlib.suppress(OSError):
            for line in (self.path / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    os.kill(int(line), signal.SIGTERM)

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            (self.path / "cgroup.kill").write_text("1")
        self._killpg(signal.SIGKILL)

    def empty(self) -> bool:
        return not cgroup_populated(self.path)

    @property
    def cgroup_path(self) -> Path | None:
        return self.path

    def cpu_seconds(self) -> float | None:
        try:
            for line in (self.path / "cpu.stat").read_text().splitlines():
                key, _, val = line.partition(" ")
                if key == "usage_usec":
                    return int(val) / 1e6
        except (OSError, ValueError):
            pass
        return None

    def close(self) -> None:
        super().close()
        # Members are gone by now on every normal path; on the cancellation path they were
        # SIGKILLed an instant ago, so allow the kernel a moment before giving up. A cgroup left
        # behind is removed by the watchdog or the next start-up.
        deadline = time.monotonic() + 0.5
        while not remove_cgroup(self.path) and time.monotonic() < deadline:
            time.sleep(POLL_S)


class EnvTree(ProcessTree):
    poll_s = 0.02  # each poll scans /proc

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def terminate(self) -> None:
        self._killpg(signal.SIGTERM)
        sweep_env(RUN_TOKEN_VAR, self.token, signal.SIGTERM)

    def kill(self) -> None:
        self._killpg(signal.SIGKILL)
        sweep_env(RUN_TOKEN_VAR, self.token, signal.SIGKILL)

    def empty(self) -> bool:
        return not pids_with_env(RUN_TOKEN_VAR, self.token)


# --- per-executor mechanisms -------------------------------------------------------------------


class TreeMechanism(abc.ABC):
    name: str

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id

    @abc.abstractmethod
    def setup(self) -> None: ...

    @abc.abstractmethod
    def new_tree(self, leaf: str, token: str) -> ProcessTree: ...

    @abc.abstractmethod
    def watchdog_args(self) -> list[str]: ...

    @abc.abstractmethod
    def cleanup_stale(self) -> list[str]:
        """Kill and remove what servers that died left behind; return what was removed."""

    @abc.abstractmethod
    def teardown(self) -> None: ...


class CgroupMechanism(TreeMechanism):
    name = "cgroup"

    def __init__(self, instance_id: str, mount: Path) -> None:
        super().__init__(instance_id)
        self.base = mount / CGROUP_DIR
        self.instance = self.base / instance_id

    def setup(self) -> None:
        self.base.mkdir(mode=0o755, exist_ok=True)
        self.instance.mkdir(mode=0o755)
        try:
            if not (self.instance / "cgroup.kill").exists():  # kernel < 5.14
                raise OSError(f"{self.instance}: no cgroup.kill (kernel too old)")
            self._probe_join()
        except BaseException:
            remove_cgroup(self.instance)
            raise

    def _probe_join(self) -> None:
        """Spawn one trivial child into a leaf, as every task will be. A writable directory does
        not prove we may move processes (that needs write access to the common ancestor's
        ``cgroup.procs``); better to fall back now than to fail every spawn later."""
        probe = self.instance / "probe"
        probe.mkdir()
        fd = os.open(probe / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)

        def join() -> None:  # the child's only pre-exec step: one write
            os.write(fd, b"0")

        try:
            subprocess.run(
                [sys.executable, "-I", "-S", "-c", ""],
                preexec_fn=join,
                check=True,
                timeout=10,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        except subprocess.SubprocessError as exc:
            raise OSError(f"cannot move a process into {probe}: {exc}") from exc
        finally:
            os.close(fd)
            os.rmdir(probe)

    def new_tree(self, leaf: str, token: str) -> ProcessTree:
        return CgroupTree(self.instance / leaf)

    def watchdog_args(self) -> list[str]:
        return ["cgroup", str(self.instance)]

    def cleanup_stale(self) -> list[str]:
        removed = []
        for entry in sorted(self.base.iterdir()):
            owner = parse_instance_id(entry.name)
            if entry.is_dir() and owner is not None and not owner_alive(*owner):
                kill_cgroup(entry)
                removed.append(str(entry))
        return removed

    def teardown(self) -> None:
        kill_cgroup(self.instance)


class EnvMechanism(TreeMechanism):
    name = "environ"

    def setup(self) -> None:
        pass

    def new_tree(self, leaf: str, token: str) -> ProcessTree:
        return EnvTree(token)

    def watchdog_args(self) -> list[str]:
        return ["environ", self.instance_id]

    def cleanup_stale(self) -> list[str]:
        stale = set()
        for instance in pids_with_env(INSTANCE_VAR).values():
            owner = parse_instance_id(instance)
            if owner is not None and not owner_alive(*owner):
                stale.add(instance)
        for instance in stale:
            sweep_env(INSTANCE_VAR, instance)
        return sorted(stale)

    def teardown(self) -> None:
        sweep_env(INSTANCE_VAR, self.instance_id)


def choose_mechanism(instance_id: str, use_cgroups: bool | None) -> TreeMechanism:
    """``True``: cgroups or an error; ``False``: the environ fallback; ``None``: the best here."""
    if use_cgroups is not False:
        mount = find_cgroup2_mount()
        error: str = "no writable cgroup2 mount"
        if mount is not None:
            mech = CgroupMechanism(instance_id, mount)
            try:
                mech.setup()
            except OSError as exc:
                error = str(exc)
            else:
                return mech
        if use_cgroups:
            raise RuntimeError(f"cgroup tree kill unavailable: {error}")
    mech_env = EnvMechanism(instance_id)
    mech_env.setup()
    return mech_env
