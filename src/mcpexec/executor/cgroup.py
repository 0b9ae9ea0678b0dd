"""Everything cgroup, in one place: the v2 leaf each attempt runs in (its tree kill), the
per-run memory and process limits, and the join.

* **Leaf** (:class:`V2Leaf`): ``<cgroup2 mount>/mcpexec/<instance>/<attempt>``, under this
  executor's *instance* cgroup. Kill = ``cgroup.kill`` (the kernel kills every member, new forks
  included), then wait for ``populated 0`` and ``rmdir``. The watchdog and start-up cleanup use
  :func:`kill_cgroup` on the instance.
* **Limits** (:class:`LimitGroups` per executor, :class:`AttemptGroups` per attempt):
  ``memory.max``/``pids.max`` in the attempt's v2 leaf when the v2 tree has those controllers,
  else the v1 ``memory`` and ``pids`` hierarchies (a hybrid host such as Debian without systemd has
  v2 for ``cgroup.kill`` but memory/pids only in v1), nested under the server's own v1 cgroup so
  whatever limit the host put on the server still applies. :func:`limit_plan` decides which limit
  a cgroup enforces; what it cannot, the caller enforces by rlimit (``limits.rlimits_for``).
* **Join** (:class:`CgroupJoin`): the ``cgroup.procs`` files (by path and as open ``O_CLOEXEC``
  descriptors) the attempt's first process writes ``0`` to before the run's process starts, so
  every descendant is inside and charged. The write itself happens in the child: the exec wrapper
  (``limits.exec_wrapper``: ``/bin/sh`` echoes ``0`` into each path), or the syscall-only
  ``preexec`` fallback (``limits.make_preexec`` writes each descriptor).

Standard library only (plus :mod:`mcpexec.executor.procfs`): the watchdog program imports it.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from mcpexec.executor.procfs import POLL_S, owner_alive, parse_instance_id, read_lines

CGROUP_CANDIDATES = (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))
CGROUP_DIR = "mcpexec"
V1_ROOT = Path("/sys/fs/cgroup")
MIB = 1024 * 1024


# --- cgroup v2: the tree-kill leaf ----------------------------------------------------------


def find_cgroup2_mount() -> Path | None:
    """The first candidate that is a cgroup2 mount we may write to."""
    mounts = read_lines("/proc/self/mounts")
    cgroup2 = {Path(line.split()[1]) for line in mounts if line.split()[2:3] == ["cgroup2"]}
    for candidate in CGROUP_CANDIDATES:
        if candidate in cgroup2 and os.access(candidate, os.W_OK):
            return candidate
    return None


def read_control(path: Path) -> str:
    """A cgroup control file's text: one open, one read (these are a few hundred bytes).
    ``Path.read_text`` costs three times the system calls (buffering, stat, seek, tty check),
    on a path taken several times per run."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 65536).decode()
    finally:
        os.close(fd)


def cgroup_populated(path: Path) -> bool:
    try:
        events = read_control(path / "cgroup.events")
    except FileNotFoundError:
        return False
    return "populated 1" in events


def kill_cgroup(path: Path, timeout: float = 5.0) -> bool:
    """``cgroup.kill`` the subtree, wait (bounded) until it is empty, remove it. Synchronous, for
    the watchdog and start-up cleanup. Returns whether the subtree is gone.

    Kill rounds repeat until the subtree is removed (or ``timeout``): a process still in the exec
    wrapper when the server died joins its leaf only after the first kill, possibly between the
    "empty" check and the ``rmdir`` (which then fails, busy). One kill missed it under load."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            (path / "cgroup.kill").write_text("1")
        if not cgroup_populated(path) and remove_cgroup(path):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)


def remove_cgroup(path: Path) -> bool:
    # cgroupfs directories hold only virtual files: rmdir leaves first, bottom-up.
    for root, dirs, _files in os.walk(path, topdown=False):
        for name in dirs:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(root, name))
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class CgroupJoin:
    """The ``cgroup.procs`` files an attempt's first process writes ``0`` to before exec: by
    path for the exec wrapper, as open descriptors for the ``preexec`` fallback."""

    paths: tuple[Path, ...] = ()
    fds: tuple[int, ...] = ()

    def plus(self, other: CgroupJoin) -> CgroupJoin:
        return CgroupJoin(self.paths + other.paths, self.fds + other.fds)


class V2Leaf:
    """One attempt's cgroup v2 leaf: created empty, joined by the child, killed, removed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(mode=0o755)
        self.procs_path = path / "cgroup.procs"
        self.procs_fd: int | None = os.open(self.procs_path, os.O_WRONLY | os.O_CLOEXEC)

    @property
    def join(self) -> CgroupJoin:
        fds = () if self.procs_fd is None else (self.procs_fd,)
        return CgroupJoin((self.procs_path,), fds)

    def release_child_fd(self) -> None:
        if self.procs_fd is not None:
            os.close(self.procs_fd)
            self.procs_fd = None

    def members(self) -> list[int]:
        with contextlib.suppress(OSError, ValueError):
            return [int(pid) for pid in self.procs_path.read_text().split()]
        return []

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            (self.path / "cgroup.kill").write_text("1")

    def populated(self) -> bool:
        return cgroup_populated(self.path)

    def cpu_seconds(self) -> float | None:
        """``usage_usec`` of ``cpu.stat``: the CPU time of every process that was in the leaf."""
        try:
            for line in read_control(self.path / "cpu.stat").splitlines():
                key, _, val = line.partition(" ")
                if key == "usage_usec":
                    return int(val) / 1e6
        except (OSError, ValueError):
            pass
        return None

    def remove(self, timeout: float = 0.5) -> None:
        self.release_child_fd()
        # Members are gone by now on every normal path; on the cancellation path they were
        # SIGKILLed an instant ago, so allow the kernel a moment before giving up. A cgroup left
        # behind is removed by the watchdog or the next start-up.
        _rmdir_tree(self.path, timeout)


# --- per-run limits -----------------------------------------------------------------------------


def _own_v1_path(controller: str) -> str | None:
    """The server's own cgroup in the v1 hierarchy of ``controller`` (``/proc/self/cgroup``)."""
    for line in read_lines("/proc/self/cgroup"):
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    return None


def _v1_mount(controller: str) -> Path | None:
    for line in read_lines("/proc/self/mounts"):
        parts = line.split()
        if len(parts) >= 4 and parts[2] == "cgroup" and controller in parts[3].split(","):
            return Path(parts[1])
    return None


def v1_base(controller: str) -> Path | None:
    """``<mount>/<own cgroup>/mcpexec`` when the v1 hierarchy exists and we may create it."""
    mount = _v1_mount(controller)
    own = _own_v1_path(controller)
    if mount is None or own is None:
        return None
    for parent in (mount / own.lstrip("/"), mount):
        if parent.is_dir() and os.access(parent, os.W_OK):
            return parent / CGROUP_DIR
    return None


def _write(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _rmdir_tree(path: Path, timeout: float = 0.5) -> bool:
    """``remove_cgroup``, retried while the last members are still leaving (bounded)."""
    deadline = time.monotonic() + timeout
    while not remove_cgroup(path):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True


def _v1_kill_members(path: Path) -> None:
    """SIGKILL whatever is still in a stale v1 group (the v2 sweep normally got them)."""
    for root, _, files in os.walk(path):
        if "cgroup.procs" in files:
            with contextlib.suppress(OSError, ValueError):
                for pid in Path(root, "cgroup.procs").read_text().split():
                    with contextlib.suppress(OSError):
                        os.kill(int(pid), 9)


@dataclass
class LimitSupport:
    """What this host can limit per run: ``"v2"``, ``"v1"`` or ``None`` for each."""

    memory: str | None = None
    pids: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.memory is not None and self.pids is not None


@dataclass(frozen=True)
class LimitPlan:
    """Which per-run limits a cgroup enforces for one attempt (``"v2"``, ``"v1"`` or ``None``),
    and how each limit is then enforced, as recorded with the attempt."""

    memory: str | None
    pids: str | None

    @property
    def memory_by(self) -> str:
        return f"cgroup-{self.memory}" if self.memory else "rlimit-as"

    @property
    def pids_by(self) -> str:
        return f"cgroup-{self.pids}" if self.pids else "rlimit-nproc-per-uid"


def limit_plan(support: LimitSupport, memory_mb: int | None, pids: int | None) -> LimitPlan:
    """A cgroup enforces a limit when the run has one and the host has the controller; the
    rest falls back to rlimits (``RLIMIT_AS`` per process, ``RLIMIT_NPROC`` per uid)."""
    return LimitPlan(
        memory=support.memory if memory_mb is not None else None,
        pids=support.pids if pids is not None else None,
    )


def _v2_enable(instance: Path) -> set[str]:
    """Enable memory/pids for the children of the v2 instance cgroup where the parent has them;
    returns the controllers its leaves get."""
    got: set[str] = set()
    for ctl in ("memory", "pids"):
        ok = True
        for group in (instance.parent, instance):
            try:
                available = (group / "cgroup.controllers").read_text().split()
                if ctl not in available:
                    ok = False
                    break
                _write(group / "cgroup.subtree_control", f"+{ctl}")
            except OSError:
                ok = False
                break
        if ok:
            got.add(ctl)
    return got


class LimitGroups:
    """Per executor: the instance directories of the limit cgroups; :meth:`new` per attempt."""

    def __init__(self, instance_id: str, v2_instance: Path | None) -> None:
        self.instance_id = instance_id
        self.v2_instance = v2_instance
        self.support = LimitSupport()
        self.v1: dict[str, Path] = {}  # controller -> instance dir

    def setup(self) -> LimitSupport:
        sup = self.support
        v2 = _v2_enable(self.v2_instance) if self.v2_instance is not None else set()
        for ctl in ("memory", "pids"):
            if ctl in v2:
                setattr(sup, ctl, "v2")
                continue
            base = v1_base(ctl)
            if base is None:
                sup.problems.append(f"no writable cgroup {ctl} controller (v2 or v1)")
                continue
            try:
                base.mkdir(mode=0o755, exist_ok=True)
                inst = base / self.instance_id
                inst.mkdir(mode=0o755)
                if ctl == "memory":
                    # v1: children inherit hierarchical accounting; make it explicit.
                    with contextlib.suppress(OSError):
                        _write(inst / "memory.use_hierarchy", "1")
            except OSError as exc:
                sup.problems.append(f"cgroup v1 {ctl}: {exc}")
                continue
            self.v1[ctl] = inst
            setattr(sup, ctl, "v1")
        return sup

    def cleanup_stale(self) -> list[str]:
        removed = []
        for ctl in ("memory", "pids"):
            base = v1_base(ctl)
            if base is None or not base.is_dir():
                continue
            for entry in sorted(base.iterdir()):
                owner = parse_instance_id(entry.name)
                if entry.is_dir() and owner is not None and not owner_alive(*owner):
                    _v1_kill_members(entry)
                    _rmdir_tree(entry, 2.0)
                    removed.append(str(entry))
        return removed

    def teardown(self) -> None:
        for inst in self.v1.values():
            _v1_kill_members(inst)
            _rmdir_tree(inst, 2.0)
        self.v1.clear()

    def new(
        self, leaf: str, v2_leaf: Path | None, memory_mb: int | None, pids: int | None
    ) -> AttemptGroups:
        return AttemptGroups(self, leaf, v2_leaf, memory_mb, pids)


class AttemptGroups:
    """One attempt's limit cgroups; the child joins the v1 ones through :attr:`join` (a v2
    limit is set on the tree-kill leaf, which the child joins anyway)."""

    def __init__(
        self,
        owner: LimitGroups,
        leaf: str,
        v2_leaf: Path | None,
        memory_mb: int | None,
        pids: int | None,
    ) -> None:
        self.dirs: list[Path] = []
        self.procs_fds: list[int] = []
        self.procs_paths: list[Path] = []
        self.memory_dir: tuple[str, Path] | None = None
        self.pids_dir: tuple[str, Path] | None = None
        self.applied: dict[str, int] = {}
        sup = owner.support
        try:
            if memory_mb is not None and sup.memory is not None:
                path = self._group(owner, "memory", leaf, v2_leaf)
                size = str(memory_mb * MIB)
                if sup.memory == "v2":
                    _write(path / "memory.max", size)
                    with contextlib.suppress(OSError):
                        _write(path / "memory.swap.max", "0")
                else:
                    _write(path / "memory.limit_in_bytes", size)
                    with contextlib.suppress(OSError):  # absent without swap accounting
                        _write(path / "memory.memsw.limit_in_bytes", size)
                self.memory_dir = (sup.memory, path)
                self.applied["memory_mb"] = memory_mb
            if pids is not None and sup.pids is not None:
                path = self._group(owner, "pids", leaf, v2_leaf)
                _write(path / "pids.max", str(pids))
                self.pids_dir = (sup.pids, path)
                self.applied["pids"] = pids
        except BaseException:
            self.close()
            raise

    def _group(self, owner: LimitGroups, ctl: str, leaf: str, v2_leaf: Path | None) -> Path:
        if getattr(owner.support, ctl) == "v2":
            assert v2_leaf is not None
            return v2_leaf  # the tree-kill leaf: the child joins it already
        path = owner.v1[ctl] / leaf
        if path not in self.dirs:
            path.mkdir(mode=0o755)
            self.dirs.append(path)
            self.procs_paths.append(path / "cgroup.procs")
            self.procs_fds.append(os.open(path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
        return path

    @property
    def join(self) -> CgroupJoin:
        return CgroupJoin(tuple(self.procs_paths), tuple(self.procs_fds))

    def release_child_fds(self) -> None:
        for fd in self.procs_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.procs_fds = []

    def oom_kills(self) -> int:
        """How many processes the memory limit killed (``oom_kill`` of v2 ``memory.events`` or of
        v1 ``memory.oom_control``)."""
        if self.memory_dir is None:
            return 0
        version, path = self.memory_dir
        name = "memory.events" if version == "v2" else "memory.oom_control"
        return _stat_field(path / name, "oom_kill")

    def pids_refused(self) -> int:
        """How many forks the pids limit refused (``max`` of ``pids.events``)."""
        if self.pids_dir is None:
            return 0
        return _stat_field(self.pids_dir[1] / "pids.events", "max")

    def close(self) -> None:
        self.release_child_fds()
        for path in reversed(self.dirs):
            _rmdir_tree(path)
        self.dirs = []


def _stat_field(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def probe_limits() -> LimitSupport:
    """Without creating anything: which controllers a root server could use here."""
    sup = LimitSupport()
    mount = find_cgroup2_mount()
    v2 = set()
    if mount is not None:
        with contextlib.suppress(OSError):
            v2 = set((mount / "cgroup.controllers").read_text().split())
    for ctl in ("memory", "pids"):
        if ctl in v2:
            setattr(sup, ctl, "v2")
        elif v1_base(ctl) is not None:
            setattr(sup, ctl, "v1")
        else:
            sup.problems.append(f"no writable cgroup {ctl} controller (v2 or v1)")
    return sup
