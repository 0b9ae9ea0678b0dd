"""The sandbox: mode selection and the bwrap executor (probes and ``doctor``: ``probe.py``).

Modes (``MCPEXEC_SANDBOX``):

* ``default`` — every run under bubblewrap (user, pid, mount, ipc, uts, cgroup and net namespaces;
  network only when the spec asks ``network: true``), a seccomp denylist, the run's processes as an
  unprivileged uid when the server is root, per-run cgroup memory + pids limits and a size-limited
  tmpfs workdir *when the host allows*; what is missing is logged loudly at start and named in
  every attempt's ``isolation``. Refuses to start without a working bwrap.
* ``strict`` — the same, but refuses to start unless bwrap, seccomp, the cgroup tree kill, cgroup
  memory + pids limits and the workdir size limit all work here; network is always off (a spec
  asking for it is refused at submit).
* ``none`` — the plain subprocess executor (process group/cgroup kill + rlimits, no isolation;
  ``pids`` and ``disk_mb`` are not enforced and recorded so). Only when configured; logged at
  error level at start and on every run, recorded as ``none``.

Probes run once, at start (and on demand from ``mcpexec doctor``). The executor reuses the whole
attempt machinery of :class:`SubprocessExecutor` (cgroup v2 ``cgroup.kill`` sweep after every
attempt: bwrap's ``--die-with-parent`` alone loses kills in the first milliseconds) through
:class:`~mcpexec.executor.sandbox_hooks.SandboxHooks`, built per attempt from the frozen
:class:`~mcpexec.executor.sandbox_hooks.SandboxRuntime` this executor fixes at start.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from mcpexec.errors import SandboxUnavailable, SecretsError
from mcpexec.executor import bwrap as bw
from mcpexec.executor import seccomp
from mcpexec.executor.base import ExecRequest, Executor
from mcpexec.executor.cgroup import LimitGroups
from mcpexec.executor.hooks import AttemptHooks
from mcpexec.executor.mounts import mounts_under, umount
from mcpexec.executor.probe import (
    DEFAULT_ROOT_WORK_DIR,
    Probe,
    landlock_abi,
    probe_bwrap,
    probe_disk,
    probe_status_init,
    sandbox_ids,
)
from mcpexec.executor.process_tree import CgroupMechanism, TreeMechanism
from mcpexec.executor.procfs import owner_alive, parse_instance_id
from mcpexec.executor.redact import check_secrets, load_secrets_file
from mcpexec.executor.sandbox_hooks import SandboxConfig, SandboxHooks, SandboxRuntime
from mcpexec.executor.subprocess import SubprocessExecutor
from mcpexec.models import ExecSpec

__all__ = ["SandboxConfig", "SandboxExecutor", "build_executor", "load_secrets"]

if TYPE_CHECKING:
    from mcpexec.settings import Settings

log = logging.getLogger(__name__)

# --- secrets -----------------------------------------------------------------------------------


def load_secrets(inline: dict[str, str], path: Path | None) -> dict[str, str]:
    secrets = dict(inline)
    if path is not None:
        secrets.update(load_secrets_file(path))
    check_secrets(secrets)
    return secrets


# --- the executor ------------------------------------------------------------------------------


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
        run_path: str | None = None,
        keep_workdirs: bool = False,
        secrets: dict[str, str] | None = None,
        pidfd_watcher: bool = False,
        spawn_helper: bool = False,
    ) -> None:
        super().__init__(
            work_root,
            run_path=run_path or bw.SANDBOX_PATH,
            keep_workdirs=keep_workdirs,
            use_cgroups=True if config.strict else None,
            secrets=secrets,
            pidfd_watcher=pidfd_watcher,
            spawn_helper=spawn_helper,
        )
        self.config = config
        self.root = os.geteuid() == 0
        self.uid, self.gid = sandbox_ids(config.uid, config.gid)
        self.probe: Probe | None = None
        self.limit_groups: LimitGroups | None = None
        self.bwrap = ""
        self.runtime: SandboxRuntime | None = None
        self.isolation = "bwrap"

    @property
    def mode(self) -> str:
        return "strict" if self.config.strict else "default"

    def workspace_root(self, default: Path) -> Path:
        """As root the sandbox's user cannot traverse ``$MCPEXEC_HOME``: workspaces live under
        the (0711, root-owned) sandbox work directory, each given to that user at spawn."""
        if not self.root:
            return default
        _prepare_root_work_dir(self.work_root)
        path = self.work_root / "workflows"
        path.mkdir(mode=0o711, exist_ok=True)
        os.chmod(path, 0o711)  # noqa: S103 - traverse only, no listing
        return path

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
        assert self.limit_groups is not None
        rt = (p, self.limit_groups, self.config, self.uid, self.gid, self.root, p.bwrap)
        status_init = probe_status_init(p.bwrap, self.uid, self.gid)
        self.runtime = SandboxRuntime(*rt, status_init=status_init)
        if status_init is None:
            log.warning(
                "sandbox: %s is missing or does not work in the sandbox: a run killed by "
                "signal N is reported as exit code 128+N (install perl-base)",
                bw.STATUS_INIT_PATH,
            )
        self.isolation = f"bwrap ({self.mode})"
        for warning in p.degraded:
            log.warning("SANDBOX DEGRADED: %s", warning)
        log.info(
            "sandbox %s: bwrap %s, run processes as uid %d, memory=%s pids=%s disk=%s seccomp=%s",
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
        await self.settle()  # the attempts' own unmounts first
        for point in mounts_under(self.instance_dir):
            umount(point)
        await super().stop()
        if self.limit_groups is not None:
            self.limit_groups.teardown()
            self.limit_groups = None
        self.runtime = None

    def attempt_hooks(self, request: ExecRequest) -> AttemptHooks:
        assert self.runtime is not None
        return SandboxHooks(
            self.runtime,
            request,
            base_limits=self.limits_in_force(request),
            redactor=self.redactor(request),
        )


# --- assembly ----------------------------------------------------------------------------------


def build_executor(settings: Settings, *, pidfd_watcher: bool = False) -> Executor:
    """The executor ``settings.sandbox`` asks for.
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
            run_path=settings.run_path,
            keep_workdirs=settings.keep_workdirs,
            secrets=secrets,
            loud=True,
            pidfd_watcher=pidfd_watcher,
            spawn_helper=settings.spawn_helper,
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
        run_path=settings.run_path,
        keep_workdirs=settings.keep_workdirs,
        secrets=secrets,
        pidfd_watcher=pidfd_watcher,
        spawn_helper=settings.spawn_helper,
    )
