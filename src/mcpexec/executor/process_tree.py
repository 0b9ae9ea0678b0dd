"""Killing a run's whole process tree, for sure: a :class:`ProcessTree` per attempt, a
:class:`TreeMechanism` per executor.

``start_new_session`` + ``killpg`` misses a double-forked ``setsid`` daemon (measured), so two
mechanisms exist, chosen once per executor by :func:`choose_mechanism`:

* **cgroup** (preferred): each attempt runs in a cgroup v2 leaf
  (:class:`~mcpexec.executor.cgroup.V2Leaf`) that its first process joins before the run's
  process starts, so every descendant is inside, whatever it does; kill = ``cgroup.kill``.
* **environ** (fallback, e.g. without a writable cgroup2 mount): ``killpg`` the session, then
  the ``/proc`` sweep for the attempt's ``MCPEXEC_RUN_TOKEN`` (:mod:`mcpexec.executor.procfs`,
  which also names this mode's limitation).

Either way a :class:`~mcpexec.executor.watchdog.Watchdog` kills everything when the server dies.
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
from collections.abc import Collection
from pathlib import Path

from mcpexec.executor.cgroup import (
    CGROUP_DIR,
    CgroupJoin,
    V2Leaf,
    find_cgroup2_mount,
    kill_cgroup,
    remove_cgroup,
)
from mcpexec.executor.procfs import (
    INSTANCE_VAR,
    POLL_S,
    RUN_TOKEN_VAR,
    owner_alive,
    parse_instance_id,
    pids_with_env,
    sweep_env,
)

# --- per-attempt trees -------------------------------------------------------------------------


class ProcessTree(abc.ABC):
    """The processes of one attempt. ``terminate`` and ``kill`` are synchronous syscalls, usable
    from a ``CancelledError`` handler."""

    def __init__(self) -> None:
        self.pgid: int | None = None

    def attach(self, pid: int) -> None:
        self.pgid = pid  # the child is a session leader: its pid is its process group id
        self.release_child_fd()

    @property
    def join(self) -> CgroupJoin:
        """The cgroup the child joins before exec (none for the environ mechanism)."""
        return CgroupJoin()

    def release_child_fd(self) -> None:  # noqa: B027 - only the cgroup tree holds one
        """Close the parent's copy of the join descriptor (after the spawn)."""

    def _killpg(self, sig: int, spare: Collection[int] = ()) -> None:
        if self.pgid is not None and self.pgid not in spare:
            with contextlib.suppress(OSError):
                os.killpg(self.pgid, sig)

    @abc.abstractmethod
    def terminate(self, spare: Collection[int] = ()) -> None:
        """SIGTERM every member but ``spare`` (best effort: a SIGKILL sweep always follows).
        The sandbox spares bwrap: its death on SIGTERM would SIGKILL the run at once."""

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
    def leaf(self) -> V2Leaf | None:
        """The attempt's cgroup v2 leaf, if the mechanism has one (limits may be set on it)."""
        return None

    def close(self) -> None:
        self.release_child_fd()


class CgroupTree(ProcessTree):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self._leaf = V2Leaf(path)

    @property
    def leaf(self) -> V2Leaf:
        return self._leaf

    @property
    def join(self) -> CgroupJoin:
        return self._leaf.join

    def release_child_fd(self) -> None:
        self._leaf.release_child_fd()

    def terminate(self, spare: Collection[int] = ()) -> None:
        self._killpg(signal.SIGTERM, spare)
        for pid in self._leaf.members():
            if pid in spare:
                continue
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)

    def kill(self) -> None:
        self._leaf.kill()
        self._killpg(signal.SIGKILL)

    def empty(self) -> bool:
        return not self._leaf.populated()

    def cpu_seconds(self) -> float | None:
        return self._leaf.cpu_seconds()

    def close(self) -> None:
        self._leaf.remove()


class EnvTree(ProcessTree):
    poll_s = 0.02  # each poll scans /proc

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def terminate(self, spare: Collection[int] = ()) -> None:
        self._killpg(signal.SIGTERM, spare)  # bwrap has no marker: the sweep spares it
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
        """Spawn one trivial child into a leaf, as every run's process will be. A writable
        directory does not prove we may move processes (that needs write access to the common
        ancestor's ``cgroup.procs``); better to fall back now than to fail every spawn later."""
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
