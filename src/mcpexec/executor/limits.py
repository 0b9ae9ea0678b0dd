"""How the child is set up before the run's process starts: rlimits, the cgroup join (the files
:mod:`mcpexec.executor.cgroup` prepared), the uid drop and ``PDEATHSIG``.

Two ways to apply them. The fast one, :func:`exec_wrapper`, puts small programs in front of the
run's process that do the work and ``exec`` on: ``/bin/sh`` joins the cgroups, ``prlimit`` sets
the rlimits, ``setpriv`` drops the uid. With no ``preexec_fn`` CPython spawns with ``vfork``; a
``preexec_fn`` forces a full ``fork`` of the server, which costs several milliseconds per run for
a server of ~90 MB and blocks the event loop until the child execs (measured: 14 ms against 4 ms
per spawn on a loaded 2-core machine; docs/benchmarks.md). The fallback, when those programs are
missing, is a ``preexec_fn``.

In the fallback, between ``fork`` and ``exec`` only the forking thread exists, so anything that
may take a lock (logging, imports, allocation-heavy code) can deadlock. The closure built here
therefore only makes syscalls with values computed in the parent beforehand: ``setrlimit``, one
``write`` to an already open ``cgroup.procs`` descriptor and ``prctl``.
"""

from __future__ import annotations

import ctypes
import os
import resource
import shlex
import shutil
import signal
from collections.abc import Callable, Sequence
from pathlib import Path

from mcpexec.executor.base import EffectiveLimits

MIB = 1024 * 1024

#: ``PR_SET_PDEATHSIG`` from <linux/prctl.h>.
_PR_SET_PDEATHSIG = 1

RLimit = tuple[int, int, int]  # (resource, soft, hard)


def _clamp(res: int, soft: int, hard: int) -> RLimit:
    # An unprivileged server cannot raise a hard limit above its own; asking would make the
    # child's setrlimit fail with EPERM and the spawn with it. Lower is always allowed.
    _, cur_hard = resource.getrlimit(res)
    if cur_hard != resource.RLIM_INFINITY:
        hard = min(hard, cur_hard)
        soft = min(soft, hard)
    return (res, soft, hard)


def rlimits_for(
    limits: EffectiveLimits, *, address_space: bool = True, nproc: int | None = None
) -> list[RLimit]:
    """The rlimits one attempt runs under, computed in the parent. ``address_space=False`` when
    a cgroup enforces ``memory_mb`` (RLIMIT_AS then only gets in the way: the JVM, Go);
    ``nproc``: a per-uid RLIMIT_NPROC backstop (it binds neither root nor one run alone)."""
    out: list[RLimit] = [(resource.RLIMIT_CORE, 0, 0)]
    if nproc is not None:
        out.append(_clamp(resource.RLIMIT_NPROC, nproc, nproc))
    if limits.cpu_s is not None:
        # soft < hard: the soft limit delivers SIGXCPU (a distinct, recognisable death); the
        # hard limit one second later is SIGKILL for processes that catch or ignore SIGXCPU.
        out.append(_clamp(resource.RLIMIT_CPU, limits.cpu_s, limits.cpu_s + 1))
    if limits.memory_mb is not None and address_space:
        size = limits.memory_mb * MIB
        out.append(_clamp(resource.RLIMIT_AS, size, size))
    fsize = limits.file_size_mb * MIB
    out.append(_clamp(resource.RLIMIT_FSIZE, fsize, fsize))
    out.append(_clamp(resource.RLIMIT_NOFILE, limits.open_files, limits.open_files))
    return out


def _load_prctl() -> Callable[[int, int, int, int, int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # libc is already loaded: no ldconfig run
    except OSError:
        return None
    fn = getattr(libc, "prctl", None)
    return fn


# Resolved once at import: looking a symbol up inside the forked child could take locks.
_PRCTL = _load_prctl()


def make_preexec(
    rlimits: list[RLimit],
    procs_fds: Sequence[int] = (),
    pdeathsig: bool = True,
    *,
    drop_to: tuple[int, int] | None = None,
) -> Callable[[], None]:
    """Build the child-side hook. Everything it touches is bound now, in the parent.

    ``procs_fds``: the ``cgroup.procs`` descriptors to join (``cgroup.CgroupJoin.fds``).
    ``drop_to``: ``(uid, gid)`` to switch to, with no supplementary groups, after the cgroup
    joins and rlimits (which need the server's privileges) and before exec.
    """
    setrlimit = resource.setrlimit
    prctl = _PRCTL if pdeathsig else None
    sigkill = int(signal.SIGKILL)
    write = os.write  # bound here: the child does no lookups on modules
    setgroups, setresgid, setresuid = os.setgroups, os.setresgid, os.setresuid

    limits = tuple(rlimits)
    fds = tuple(procs_fds)
    uid, gid = drop_to if drop_to is not None else (-1, -1)
    no_groups: list[int] = []

    def preexec() -> None:
        # Join the attempt's cgroups first, so that every process the run ever forks is inside
        # them: "0" means "the writing process".
        for fd in fds:
            write(fd, b"0")
        for res, soft, hard in limits:
            setrlimit(res, (soft, hard))
        if uid >= 0:
            setgroups(no_groups)
            setresgid(gid, gid, gid)
            setresuid(uid, uid, uid)
        # If the server's loop thread dies, the direct child gets SIGKILL at once; the rest of
        # the tree is the watchdog's job. After the uid change, which clears it.
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, sigkill, 0, 0, 0)

    return preexec


_PRLIMIT_NAMES = {
    resource.RLIMIT_CORE: "core",
    resource.RLIMIT_NPROC: "nproc",
    resource.RLIMIT_CPU: "cpu",
    resource.RLIMIT_AS: "as",
    resource.RLIMIT_FSIZE: "fsize",
    resource.RLIMIT_NOFILE: "nofile",
}
#: Where the wrapper programs are looked up: system directories only, never the run's PATH.
_SYSTEM_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"


def _prlimit_value(value: int) -> str:
    return "unlimited" if value == resource.RLIM_INFINITY else str(value)


def exec_wrapper(
    rlimits: list[RLimit],
    procs_paths: Sequence[Path],
    drop_to: tuple[int, int] | None = None,
    server_pid: int | None = None,
) -> list[str] | None:
    """The argv prefix that applies cgroup joins, rlimits and the uid drop by exec'ing through
    ``/bin/sh``, ``prlimit`` and ``setpriv`` (util-linux); the run's executable and arguments
    follow it. ``None`` when a needed program is missing: use :func:`make_preexec` then.

    The process keeps its pid through every exec, so it is the session leader the executor
    watches, and it is inside the cgroups before the run's process runs its first instruction.
    What the preexec path adds and this one lacks is ``PDEATHSIG`` on the direct child; the
    executor's watchdog kills the whole tree when the server dies either way, except a process
    that joins the cgroup only after the watchdog's kill (the server died while the wrapper was
    starting). So after joining, the shell checks that its parent is still ``server_pid``
    (default: this process; ``/proc/self/stat``, field 4 — a dead parent means it was
    reparented) and exits otherwise: joined before the kill, the kill got it; after, it stops.
    """
    prlimit = shutil.which("prlimit", path=_SYSTEM_PATH)
    setpriv = shutil.which("setpriv", path=_SYSTEM_PATH) if drop_to is not None else None
    if prlimit is None or (drop_to is not None and setpriv is None):
        return None
    argv: list[str] = []
    if procs_paths:
        # "0" moves the writing process, i.e. this shell, which then becomes prlimit, ….
        joins = " && ".join(f"echo 0 > {shlex.quote(str(p))}" for p in procs_paths)
        server = os.getpid() if server_pid is None else server_pid
        alive = f'read -r _ _ _ ppid _ < /proc/self/stat && [ "$ppid" = {server} ]'
        # The shell would export PWD into the run's environment: unset it (allowlist only).
        script = f'{joins} && {alive} && unset PWD && exec "$@"'
        argv += ["/bin/sh", "-c", script, "mcpexec-spawn"]
    argv.append(prlimit)
    for res, soft, hard in rlimits:
        argv.append(f"--{_PRLIMIT_NAMES[res]}={_prlimit_value(soft)}:{_prlimit_value(hard)}")
    argv.append("--")
    if drop_to is not None:
        assert setpriv is not None
        uid, gid = drop_to
        argv += [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
    return argv
