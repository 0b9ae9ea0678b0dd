"""The sandbox: mode selection and the bwrap executor (probes and ``doctor``: ``probe.py``).

Modes (``MCPEXEC_SANDBOX``):

* ``default`` — every run under bubblewrap (user, pid, mount, ipc, uts, cgroup and net namespaces;
  network only when the spec asks ``network: true``), a seccomp denylist, the task as an
  unprivileged uid when the server is root, per-run cgroup memory + pids limits and a size-limited
  tmpfs workdir *when the host allows*; what is missing is logged loudly at start and named in
  every attempt's ``isolation``. Refuses to start without a working bwrap.
* ``strict`` — the same, but refuses to start unless bwrap, seccomp, the cgroup tree kill, cgroup
  memory + pids limits and the workdir size limit all work here; network is always off (a spec
  asking for it is refused at submit).
* ``none`` — the plain subprocess executor (process group/cgroup kill + rlimits, no isolation).
  Only when configured; logged at error level at start and on every run, recorded as ``none``.

Probes run once, at start (and on demand from ``mcpexec doctor``). The executor reuses the whole
attempt machinery of :class:`SubprocessExecutor` (cgroup v2 ``cgroup.kill`` sweep after every
attempt: bwrap's ``--die-with-parent`` alone loses kills in the first milliseconds) through
:class:`~mcpexec.executor.hooks.AttemptHooks`.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcpexec.executor import bwrap as bw
from mcpexec.executor import seccomp
from mcpexec.executor.base import ExecRequest, Executor
from mcpexec.executor.cgroup_limits import AttemptGroups, LimitGroups
from mcpexec.executor.hooks import AttemptHooks, Spawn
from mcpexec.executor.mechanism import CgroupMechanism, TreeMechanism
from mcpexec.executor.probe import (
    DEFAULT_ROOT_WORK_DIR,
    MIB,
    Probe,
    SandboxUnavailable,
    landlock_abi,
    mount_tmpfs,
    mounts_under,
    probe_bwrap,
    probe_disk,
    sandbox_ids,
    umount,
)
from mcpexec.executor.redact import SecretsError, check_secrets, load_secrets_file
from mcpexec.executor.subprocess import SubprocessExecutor
from mcpexec.executor.tree import owner_alive, parse_instance_id
from mcpexec.executor.workdir import Workdir
from mcpexec.models import ExecSpec, Failure, FailureKind

log = logging.getLogger(__name__)

# --- secrets -----------------------------------------------------------------------------------


def load_secrets(inline: dict[str, str], path: Path | None) -> dict[str, str]:
    secrets = dict(inline)
    if path is not None:
        secrets.update(load_secrets_file(path))
    check_secrets(secrets)
    return secrets


# --- the executor ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SandboxConfig:
    strict: bool = False
    uid: int = 65534
    gid: int = 65534
    tmp_mb: int = 64
    ro_binds: tuple[str, ...] = ()


def _prepare_root_work_dir(path: Path) -> None:
    """A directory every ancestor of which the sandbox uid may traverse, owned by root and not
    writable by anyone else (else someone could swap what we bind)."""
    path.mkdir(mode=0o711, parents=True, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
        raise SandboxUnavailable(
            f"{path} must be a directory owned by root and writable only by it "
            "(set sandbox_work_dir to another path)"
        )
    os.chmod(path, 0o711)  # noqa: S103 - traverse only, no listing


class SandboxExecutor(SubprocessExecutor):
    """Runs each attempt under bubblewrap; see the module docstring for the modes."""

    def __init__(
        self,
        work_root: Path,
        config: SandboxConfig,
        *,
        task_path: str | None = None,
        keep_workdirs: bool = False,
        secrets: dict[str, str] | None = None,
        pidfd_watcher: bool = False,
    ) -> None:
        super().__init__(
            work_root,
            task_path=task_path or bw.SANDBOX_PATH,
            keep_workdirs=keep_workdirs,
            use_cgroups=True if config.strict else None,
            secrets=secrets,
            pidfd_watcher=pidfd_watcher,
        )
        self.config = config
        self.root = os.geteuid() == 0
        self.uid, self.gid = sandbox_ids(config.uid, config.gid)
        self.probe: Probe | None = None
        self.limit_groups: LimitGroups | None = None
        self.bwrap = ""
        self.isolation = "bwrap"

    @property
    def mode(self) -> str:
        return "strict" if self.config.strict else "default"

    def check_spec(self, spec: ExecSpec) -> str | None:
        problem = super().check_spec(spec)
        if problem is None and spec.network and self.config.strict:
            problem = "network access is always off in strict sandbox mode"
        return problem

    async def start(self) -> None:
        if self.mechanism is not None:
            return
        if self.root:
            _prepare_root_work_dir(self.work_root)
        p = self.probe = Probe(mode=self.mode, root=self.root, uid=self.uid, gid=self.gid)
        p.seccomp_error = seccomp.unavailable()
        p.disk_error = probe_disk(self.root)
        p.landlock = landlock_abi()
        try:
            await super().start()
        except RuntimeError as exc:  # strict: no cgroup tree kill
            raise SandboxUnavailable(f"strict sandbox mode: {exc}") from exc
        mechanism = self._started_mechanism()
        try:
            os.chmod(self.instance_dir, 0o711 if self.root else 0o700)
            v2 = mechanism.instance if isinstance(mechanism, CgroupMechanism) else None
            p.cgroup_kill = str(v2) if v2 is not None else None
            self.limit_groups = LimitGroups(self.instance_id, v2)
            p.limits = self.limit_groups.setup()
            self.stale_removed += self.limit_groups.cleanup_stale()
            probe_dir = Path(tempfile.mkdtemp(dir=self.instance_dir, prefix="probe-"))
            try:
                if self.root:
                    os.chown(probe_dir, self.uid, self.gid)
                p.bwrap_version, p.bwrap_error = probe_bwrap(self.uid, self.gid, probe_dir)
            finally:
                shutil.rmtree(probe_dir, ignore_errors=True)
            p.bwrap = shutil.which("bwrap")
            if p.bwrap_error is not None or p.bwrap is None:
                raise SandboxUnavailable(
                    f"sandbox mode {self.mode}: {p.bwrap_error}. Run `mcpexec doctor`; "
                    "MCPEXEC_SANDBOX=none runs without isolation."
                )
            if self.config.strict and p.missing_for_strict:
                raise SandboxUnavailable(
                    "strict sandbox mode refuses to start; missing: "
                    + "; ".join(p.missing_for_strict)
                )
        except BaseException:
            await super().stop()
            if self.limit_groups is not None:
                self.limit_groups.teardown()
            raise
        self.bwrap = p.bwrap
        self.isolation = f"bwrap ({self.mode})"
        for warning in p.degraded:
            log.warning("SANDBOX DEGRADED: %s", warning)
        log.info(
            "sandbox %s: bwrap %s, tasks as uid %d, memory=%s pids=%s disk=%s seccomp=%s",
            self.mode,
            p.bwrap_version,
            self.uid,
            p.limits.memory or "rlimit",
            p.limits.pids or "rlimit",
            "tmpfs" if p.disk_error is None else "unlimited",
            "on" if p.seccomp_error is None else "off",
        )

    def _started_mechanism(self) -> TreeMechanism:
        assert self.mechanism is not None
        return self.mechanism

    def _remove_stale_workdirs(self) -> list[str]:
        # Size-limited workdirs are tmpfs mounts: unmount those of dead servers first.
        for point in mounts_under(self.work_root):
            rel = point.relative_to(self.work_root).parts
            owner = parse_instance_id(rel[0]) if rel else None
            if owner is not None and not owner_alive(*owner):
                umount(point)
        return super()._remove_stale_workdirs()

    async def stop(self) -> None:
        for point in mounts_under(self.instance_dir):
            umount(point)
        await super().stop()
        if self.limit_groups is not None:
            self.limit_groups.teardown()
            self.limit_groups = None

    def attempt_hooks(self, request: ExecRequest) -> AttemptHooks:
        return SandboxHooks(self, request)

    def describe(self, request: ExecRequest, memory: str, pids: str, disk: str) -> str:
        assert self.probe is not None
        p = self.probe
        parts = [
            f"bwrap({self.mode})",
            f"uid={self.uid}",
            f"net={'on' if request.spec.network else 'off'}",
            "seccomp" if p.seccomp_error is None else "NO-seccomp",
            f"memory={memory}",
            f"pids={pids}",
            f"disk={disk}",
            f"kill={'cgroup-v2' if p.cgroup_kill else 'environ-sweep'}",
        ]
        return " ".join(parts)


class SandboxHooks(AttemptHooks):
    def __init__(self, ex: SandboxExecutor, request: ExecRequest) -> None:
        self.ex = ex
        self.request = request
        lim = request.limits
        p = ex.probe
        assert p is not None
        self.groups: AttemptGroups | None = None
        self.spawned: bw.BwrapSpawn | None = None
        self.mounted: Path | None = None
        self.memcg = p.limits.memory is not None and lim.memory_mb is not None
        self.pidcg = p.limits.pids is not None and lim.pids is not None
        self.tmpfs = p.disk_error is None and lim.disk_mb is not None
        memory = f"cgroup-{p.limits.memory}" if self.memcg else "rlimit-as"
        pids = f"cgroup-{p.limits.pids}" if self.pidcg else "rlimit-nproc-per-uid"
        disk = "tmpfs" if self.tmpfs else "UNLIMITED"
        limits: dict[str, Any] = ex.limits_in_force(request)
        limits.update(
            memory_mb=lim.memory_mb,
            memory_by=memory if lim.memory_mb is not None else None,
            pids=lim.pids,
            pids_by=pids if lim.pids is not None else None,
            disk_mb=lim.disk_mb if self.tmpfs else None,
            disk_by=disk,
            tmp_mb=ex.config.tmp_mb,
            network=request.spec.network,
        )
        super().__init__(
            isolation=ex.describe(request, memory, pids, disk),
            limits={k: v for k, v in limits.items() if v is not None},
            redactor=ex.redactor(request),
            task_home=bw.SANDBOX_HOME,
            task_tmp="/tmp",  # noqa: S108 - the sandbox's private tmpfs
        )

    def create_workdir(self, parent: Path, leaf: str) -> Workdir:
        if not self.tmpfs:
            return Workdir.create(parent, leaf)
        disk_mb = self.request.limits.disk_mb
        assert disk_mb is not None

        def mount(path: Path) -> None:
            mount_tmpfs(path, disk_mb, self.ex.uid, self.ex.gid)
            self.mounted = path

        return Workdir.create(parent, leaf, mount=mount)

    def spawn(self, spawn: Spawn, workdir: Workdir, v2_leaf: Path | None) -> Spawn:
        ex, lim = self.ex, self.request.limits
        if ex.root:
            # Everything in the fresh workdir was written by us a moment ago and no task process
            # exists yet: nothing here can have been swapped for a link. Still, never follow.
            for _root, dirs, files, dfd in os.fwalk(dir_fd=workdir.fd):
                for name in (*dirs, *files):
                    os.chown(name, ex.uid, ex.gid, dir_fd=dfd, follow_symlinks=False)
            os.chown(workdir.fd, ex.uid, ex.gid)
        assert ex.limit_groups is not None
        self.groups = ex.limit_groups.new(
            workdir.path.name,
            v2_leaf,
            lim.memory_mb if self.memcg else None,
            lim.pids if self.pidcg else None,
        )
        p = ex.probe
        assert p is not None
        seccomp_fd = seccomp.filter_fd(ex.config.strict) if p.seccomp_error is None else None
        self.spawned = bw.build(
            ex.bwrap,
            spawn.argv,
            workdir=str(workdir.path),
            env=spawn.env,
            uid=ex.uid,
            gid=ex.gid,
            network=self.request.spec.network and not ex.config.strict,
            tmp_bytes=ex.config.tmp_mb * MIB,
            seccomp_fd=seccomp_fd,
            extra_ro=ex.config.ro_binds,
        )
        nproc = None
        if not self.pidcg and ex.root:
            nproc = max(1024, 4 * (lim.pids or 256))
        return Spawn(
            argv=self.spawned.argv,
            executable=ex.bwrap,
            env={},  # the task's environment travels in --args; bwrap itself gets none
            cwd=Path("/"),
            pass_fds=tuple(self.spawned.pass_fds),
            procs_fds=tuple(self.groups.procs_fds),
            procs_paths=tuple(self.groups.procs_paths),
            drop_to=(ex.uid, ex.gid) if ex.root else None,
            address_space=not self.memcg,
            nproc=nproc,
        )

    def after_spawn(self) -> None:
        if self.spawned is not None:
            self.spawned.close()
        if self.groups is not None:
            self.groups.release_child_fds()

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
        if self.groups is not None:
            self.groups.close()


# --- assembly ----------------------------------------------------------------------------------


def build_executor(settings: Any, *, pidfd_watcher: bool = False) -> Executor:
    """The executor ``settings.sandbox`` asks for (``settings``: a ``Settings``).
    ``pidfd_watcher``: for processes with one event loop (see ``use_pidfd_child_watcher``)."""
    try:
        secrets = load_secrets(settings.secrets, settings.secrets_file)
    except SecretsError as exc:
        raise SandboxUnavailable(str(exc)) from None
    if settings.sandbox == "none":
        log.error(
            "SANDBOX DISABLED (MCPEXEC_SANDBOX=none): runs execute on the host as uid %d with "
            "no isolation",
            os.geteuid(),
        )
        return SubprocessExecutor(
            settings.work_dir,
            task_path=settings.task_path,
            keep_workdirs=settings.keep_workdirs,
            secrets=secrets,
            loud=True,
            pidfd_watcher=pidfd_watcher,
        )
    config = SandboxConfig(
        strict=settings.sandbox == "strict",
        uid=settings.sandbox_uid,
        gid=settings.sandbox_gid,
        tmp_mb=settings.sandbox_tmp_mb,
        ro_binds=tuple(settings.sandbox_ro_binds),
    )
    root_dir = settings.sandbox_work_dir or DEFAULT_ROOT_WORK_DIR
    work_root = root_dir if os.geteuid() == 0 else settings.work_dir
    return SandboxExecutor(
        work_root,
        config,
        task_path=settings.task_path,
        keep_workdirs=settings.keep_workdirs,
        secrets=secrets,
        pidfd_watcher=pidfd_watcher,
    )
