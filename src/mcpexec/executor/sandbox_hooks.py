"""The bwrap backend's part of one attempt: :class:`SandboxHooks`, built from the frozen
:class:`SandboxRuntime` the :class:`~mcpexec.executor.sandbox.SandboxExecutor` fixed at start.

Per attempt: a size-limited tmpfs workdir (``mounts``), the limit cgroups (``cgroup``: which limit
a cgroup enforces, the groups, the join), the bwrap command line (``bwrap``) with the seccomp
filter (``seccomp``), and afterwards the reclassification of an OOM kill.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcpexec.executor import bwrap as bw
from mcpexec.executor import seccomp
from mcpexec.executor.base import ExecRequest
from mcpexec.executor.cgroup import MIB, AttemptGroups, LimitGroups, V2Leaf, limit_plan
from mcpexec.executor.hooks import AttemptHooks, Spawn
from mcpexec.executor.mounts import mount_tmpfs, umount
from mcpexec.executor.probe import Probe
from mcpexec.executor.redact import Redactor
from mcpexec.executor.workdir import Workdir
from mcpexec.models import Failure, FailureKind

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SandboxConfig:
    strict: bool = False
    uid: int = 65534
    gid: int = 65534
    tmp_mb: int = 64
    ro_binds: tuple[str, ...] = ()


@dataclass(frozen=True)
class SandboxRuntime:
    """What the sandbox executor found and set up at start, read by every attempt."""

    probe: Probe
    limit_groups: LimitGroups
    config: SandboxConfig
    uid: int
    gid: int
    root: bool  # the server runs as root: chown the workdir, drop to uid/gid
    bwrap: str
    #: The interpreter of the sandbox's status-reporting pid 1 (``bwrap.STATUS_INIT``), or
    #: ``None``: bwrap's own init, and a signal N is seen as exit status 128+N.
    status_init: str | None = None

    @property
    def mode(self) -> str:
        return "strict" if self.config.strict else "default"

    def describe(self, network: bool, memory: str, pids: str, disk: str) -> str:
        """The ``isolation`` recorded with an attempt."""
        p = self.probe
        parts = [
            f"bwrap({self.mode})",
            f"uid={self.uid}",
            f"net={'on' if network else 'off'}",
            "seccomp" if p.seccomp_error is None else "NO-seccomp",
            f"memory={memory}",
            f"pids={pids}",
            f"disk={disk}",
            f"kill={'cgroup-v2' if p.cgroup_kill else 'environ-sweep'}",
        ]
        return " ".join(parts)


def chown_workspace(path: str, uid: int, gid: int) -> None:
    """Give a workflow's workspace to the sandbox's user, so that its steps can write it. Never
    follows a link; a file with other hard links is left alone (it may be a link a step made to
    a file outside the workspace)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for _root, dirs, files, dfd in os.fwalk(dir_fd=fd):
            for name in (*dirs, *files):
                info = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode) or info.st_nlink == 1:
                    os.chown(name, uid, gid, dir_fd=dfd, follow_symlinks=False)
        os.chown(fd, uid, gid)
    finally:
        os.close(fd)


class SandboxHooks(AttemptHooks):
    def __init__(
        self,
        runtime: SandboxRuntime,
        request: ExecRequest,
        *,
        base_limits: dict[str, Any],
        redactor: Redactor | None,
    ) -> None:
        self.rt = rt = runtime
        self.request = request
        lim = request.limits
        p = rt.probe
        self.groups: AttemptGroups | None = None
        self.spawned: bw.BwrapSpawn | None = None
        self.mounted: Path | None = None
        self.status_fd: int | None = None  # read end: the sandbox init's wait status report
        self.status_write: int | None = None
        self.plan = limit_plan(p.limits, lim.memory_mb, lim.pids)
        self.tmpfs = p.disk_error is None and lim.disk_mb is not None
        disk = "tmpfs" if self.tmpfs else "UNLIMITED"
        limits = dict(base_limits)
        limits.update(
            memory_mb=lim.memory_mb,
            memory_by=self.plan.memory_by if lim.memory_mb is not None else None,
            pids=lim.pids,
            pids_by=self.plan.pids_by if lim.pids is not None else None,
            disk_mb=lim.disk_mb if self.tmpfs else None,
            disk_by=disk,
            tmp_mb=rt.config.tmp_mb,
            network=request.spec.network,
        )
        super().__init__(
            isolation=rt.describe(
                request.spec.network, self.plan.memory_by, self.plan.pids_by, disk
            ),
            limits={k: v for k, v in limits.items() if v is not None},
            redactor=redactor,
            run_home=bw.SANDBOX_HOME,
            run_tmp="/tmp",  # noqa: S108 - the sandbox's private tmpfs
        )

    def create_workdir(self, parent: Path, leaf: str) -> Workdir:
        if not self.tmpfs:
            return Workdir.create(parent, leaf)
        disk_mb = self.request.limits.disk_mb
        assert disk_mb is not None

        def mount(path: Path) -> None:
            mount_tmpfs(path, disk_mb, self.rt.uid, self.rt.gid)
            self.mounted = path

        return Workdir.create(parent, leaf, mount=mount)

    def spawn(self, spawn: Spawn, workdir: Workdir, v2_leaf: V2Leaf | None) -> Spawn:
        rt, lim = self.rt, self.request.limits
        if rt.root:
            # Everything in the fresh workdir was written by us a moment ago and no process of
            # the run exists yet: nothing here can have been swapped for a link. Never follow.
            for _root, dirs, files, dfd in os.fwalk(dir_fd=workdir.fd):
                for name in (*dirs, *files):
                    os.chown(name, rt.uid, rt.gid, dir_fd=dfd, follow_symlinks=False)
            os.chown(workdir.fd, rt.uid, rt.gid)
            if self.request.workspace:
                chown_workspace(self.request.workspace, rt.uid, rt.gid)
        self.groups = rt.limit_groups.new(
            workdir.path.name,
            v2_leaf.path if v2_leaf is not None else None,
            lim.memory_mb if self.plan.memory else None,
            lim.pids if self.plan.pids else None,
        )
        seccomp_ok = rt.probe.seccomp_error is None
        status: tuple[str, int] | None = None
        if rt.status_init is not None:
            self.status_fd, self.status_write = os.pipe()  # both close-on-exec until pass_fds
            os.set_blocking(self.status_fd, False)
            status = (rt.status_init, self.status_write)
        self.spawned = bw.build(
            rt.bwrap,
            spawn.argv,
            workdir=str(workdir.path),
            env=spawn.env,
            uid=rt.uid,
            gid=rt.gid,
            network=self.request.spec.network and not rt.config.strict,
            tmp_bytes=rt.config.tmp_mb * MIB,
            seccomp_fd=seccomp.filter_fd(rt.config.strict) if seccomp_ok else None,
            extra_ro=rt.config.ro_binds,
            status=status,
            extra_rw=(self.request.workspace,) if self.request.workspace else (),
        )
        nproc = None
        if not self.plan.pids and rt.root:
            nproc = max(1024, 4 * (lim.pids or 256))
        return Spawn(
            argv=self.spawned.argv,
            executable=rt.bwrap,
            env={},  # the run's environment travels in --args; bwrap itself gets none
            cwd=Path("/"),
            pass_fds=(*self.spawned.pass_fds, *([] if status is None else [status[1]])),
            join=self.groups.join,
            drop_to=(rt.uid, rt.gid) if rt.root else None,
            address_space=not self.plan.memory,
            nproc=nproc,
        )

    def after_spawn(self) -> None:
        if self.spawned is not None:
            self.spawned.close()
        self._close_status_write()
        if self.groups is not None:
            self.groups.release_child_fds()

    def spared_by_sigterm(self, pid: int) -> tuple[int, ...]:
        # The spawned process is bwrap (after the exec wrapper): it dies on SIGTERM, and its
        # death SIGKILLs the sandbox's pid 1 (--die-with-parent) and with it the whole run
        # before the grace. The run's processes get the SIGTERM; bwrap exits when they do.
        return (pid,)

    def _close_status_write(self) -> None:
        if self.status_write is not None:
            os.close(self.status_write)
            self.status_write = None

    def returncode(self, observed: int | None) -> int | None:
        """The run's command as it really ended, from the sandbox init's report (bwrap's own
        exit status says 128+N for a signal N, like ``exit 128+N``); ``observed`` when there is
        no report (the init was killed first, e.g. by the tree kill, or no init is used)."""
        if self.status_fd is None:
            return observed
        try:
            report = os.read(self.status_fd, 64)
        except OSError:
            return observed
        line = report.split(b"\n", 1)[0]
        if not line.isdigit() or int(line) > 0xFFFF:
            return observed
        status = int(line)
        if status & 0x7F:  # WIFSIGNALED: the low 7 bits are the signal (0x7f: stopped)
            return -(status & 0x7F) if status & 0x7F != 0x7F else observed
        return status >> 8

    def reclassify(self, failure: Failure | None, notes: list[str]) -> Failure | None:
        if self.groups is None:
            return failure
        refused = self.groups.pids_refused()
        if refused:
            notes.append(f"process limit reached: {refused} fork(s) refused (pids.max)")
        kills = self.groups.oom_kills()
        if kills:
            notes.append(f"memory limit: {kills} process(es) killed by the OOM killer")
            if failure is not None and failure.kind in (FailureKind.SIGNAL, FailureKind.EXIT_CODE):
                mb = self.request.limits.memory_mb
                return Failure(
                    kind=FailureKind.MEMORY_LIMIT,
                    message=f"memory limit of {mb} MiB exceeded (killed by the OOM killer)",
                )
        return failure

    def release_workdir(self, workdir: Workdir, keep: bool) -> None:
        if self.mounted is None or keep:
            super().release_workdir(workdir, keep)
            return
        workdir.close()
        if not umount(self.mounted):
            log.warning("could not unmount workdir %s", self.mounted)
        shutil.rmtree(self.mounted, ignore_errors=True)

    def close(self) -> None:
        if self.spawned is not None:
            self.spawned.close()
        self._close_status_write()
        if self.status_fd is not None:
            os.close(self.status_fd)
            self.status_fd = None
        if self.groups is not None:
            self.groups.close()
