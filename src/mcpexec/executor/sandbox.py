"""The sandbox: mode selection, capability probes, ``mcpexec doctor`` and the bwrap executor.

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

import ctypes
import ctypes.util
import logging
import os
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcpexec.executor import bwrap as bw
from mcpexec.executor import seccomp
from mcpexec.executor.base import ExecRequest, Executor
from mcpexec.executor.cgroup_limits import AttemptGroups, LimitGroups, LimitSupport, probe_limits
from mcpexec.executor.hooks import AttemptHooks, Spawn
from mcpexec.executor.mechanism import CgroupMechanism, TreeMechanism
from mcpexec.executor.redact import SecretsError, check_secrets, load_secrets_file
from mcpexec.executor.subprocess import SubprocessExecutor
from mcpexec.executor.tree import find_cgroup2_mount, owner_alive, parse_instance_id
from mcpexec.executor.workdir import Workdir
from mcpexec.models import ExecSpec, Failure, FailureKind

log = logging.getLogger(__name__)

MIB = 1024 * 1024
MODES = ("default", "strict", "none")
DEFAULT_ROOT_WORK_DIR = Path("/tmp/mcpexec-sandbox")  # noqa: S108 - created 0711 root, checked
_MS_NOSUID, _MS_NODEV = 2, 4
_MNT_DETACH = 2
_LANDLOCK_CREATE_RULESET = 444  # the same number on every architecture (asm-generic)
_LANDLOCK_CREATE_RULESET_VERSION = 1


class SandboxUnavailable(RuntimeError):
    """The configured mode cannot run on this host (the message says what is missing)."""


# --- small syscalls ----------------------------------------------------------------------------

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _mount_tmpfs(path: Path, size_mb: int, uid: int, gid: int) -> None:
    inodes = max(4096, size_mb * 256)
    opts = f"size={size_mb}m,nr_inodes={inodes},mode=0700,uid={uid},gid={gid}"
    if _libc.mount(b"tmpfs", os.fsencode(path), b"tmpfs", _MS_NOSUID | _MS_NODEV, opts.encode()):
        err = ctypes.get_errno()
        raise OSError(err, f"mount tmpfs on {path}: {os.strerror(err)}")


def _umount(path: Path) -> bool:
    return bool(_libc.umount2(os.fsencode(path), _MNT_DETACH) == 0)


def mounts_under(root: Path) -> list[Path]:
    """Mount points strictly below ``root`` (deepest first), from ``/proc/self/mountinfo``."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    prefix = str(root).rstrip("/") + "/"
    found = []
    for line in lines:
        point = line.split()[4].encode().decode("unicode_escape")  # \040 for spaces
        if point.startswith(prefix):
            found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def landlock_abi() -> int | None:
    """The Landlock ABI version the kernel offers (probed with the syscall), or ``None``."""
    try:
        version = _libc.syscall(
            _LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), _LANDLOCK_CREATE_RULESET_VERSION
        )
    except (AttributeError, OSError):
        return None
    return int(version) if version > 0 else None


# --- probing -----------------------------------------------------------------------------------


@dataclass
class Probe:
    """What this host offers, and what the configured mode makes of it."""

    mode: str
    root: bool
    uid: int
    gid: int
    bwrap: str | None = None
    bwrap_version: str | None = None
    bwrap_error: str | None = None
    cgroup_kill: str | None = None  # the cgroup2 mount used for the tree kill
    limits: LimitSupport = field(default_factory=LimitSupport)
    disk_error: str | None = None
    seccomp_error: str | None = None
    landlock: int | None = None

    @property
    def missing_for_strict(self) -> list[str]:
        out = []
        if self.bwrap_error:
            out.append(f"bwrap: {self.bwrap_error}")
        if self.seccomp_error:
            out.append(f"seccomp: {self.seccomp_error}")
        if self.cgroup_kill is None:
            out.append("cgroup v2 tree kill: no writable cgroup2 mount")
        if self.limits.memory is None:
            out.append("per-run memory limit: no writable cgroup memory controller")
        if self.limits.pids is None:
            out.append("per-run process limit: no writable cgroup pids controller")
        if self.disk_error:
            out.append(f"workdir size limit: {self.disk_error}")
        return out

    @property
    def degraded(self) -> list[str]:
        """What ``default`` mode runs without (each also named in every run's isolation)."""
        out = []
        if self.seccomp_error:
            out.append(f"no seccomp filter ({self.seccomp_error})")
        if self.limits.memory is None:
            out.append("no per-run memory cgroup: memory_mb is an RLIMIT_AS per process")
        if self.limits.pids is None:
            out.append(
                "no per-run pids cgroup: a fork bomb is bounded only by RLIMIT_NPROC (per uid)"
            )
        if self.disk_error:
            out.append(f"no workdir size limit ({self.disk_error}): disk_mb is not enforced")
        if self.cgroup_kill is None:
            out.append("no cgroup v2 tree kill: the environ-marker sweep is used")
        return out


def sandbox_ids(settings_uid: int, settings_gid: int) -> tuple[int, int]:
    """The uid/gid tasks run as: the configured ones for a root server, else the server's."""
    if os.geteuid() == 0:
        return settings_uid, settings_gid
    return os.geteuid(), os.getegid()


def _drop(uid: int, gid: int) -> Any:
    if os.geteuid() != 0:
        return None

    def preexec() -> None:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)

    return preexec


def probe_bwrap(uid: int, gid: int, bind: Path | None = None) -> tuple[str | None, str | None]:
    """``(version, error)``: run a trivial sandbox as the task uid, binding ``bind`` (a directory
    the sandbox uid must be able to reach) like a workdir."""
    exe = shutil.which("bwrap")
    if exe is None:
        return None, "bwrap is not installed"
    try:
        version = subprocess.run(
            [exe, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
        argv = [
            exe, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
            "--new-session", "--cap-drop", "ALL", "--ro-bind", "/usr", "/usr",
            "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
            "--symlink", "usr/lib64", "/lib64", "--proc", "/proc", "--dev", "/dev",
        ]  # fmt: skip
        if bind is not None:
            argv += ["--bind", str(bind), bw.SANDBOX_HOME]
        argv += ["--", "/bin/true"]
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
            env={},
            preexec_fn=_drop(uid, gid),  # syscalls only
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"bwrap could not run: {exc}"
    if proc.returncode != 0:
        why = proc.stderr.strip() or f"exit status {proc.returncode}"
        return version, f"a trivial sandbox failed as uid {uid}: {why}"
    return version, None


def probe_disk(root: bool) -> str | None:
    """Why no size-limited tmpfs workdir can be mounted here, or ``None``."""
    if not root:
        return "mounting a size-limited tmpfs workdir needs a root server"
    with tempfile.TemporaryDirectory(prefix="mcpexec-probe-") as tmp:
        target = Path(tmp)
        try:
            _mount_tmpfs(target, 1, 0, 0)
        except OSError as exc:
            return str(exc)
        _umount(target)
    return None


def probe(mode: str, uid: int = 65534, gid: int = 65534) -> Probe:
    """Probe every layer without starting anything (``mcpexec doctor``)."""
    root = os.geteuid() == 0
    uid, gid = sandbox_ids(uid, gid)
    p = Probe(mode=mode, root=root, uid=uid, gid=gid, bwrap=shutil.which("bwrap"))
    p.bwrap_version, p.bwrap_error = probe_bwrap(uid, gid)
    mount = find_cgroup2_mount()
    p.cgroup_kill = str(mount) if mount is not None else None
    p.limits = probe_limits()
    p.disk_error = probe_disk(root)
    p.seccomp_error = seccomp.unavailable()
    p.landlock = landlock_abi()
    return p


_FIX = {
    "bwrap": "apt-get install bubblewrap (and allow unprivileged user namespaces: "
    "sysctl kernel.unprivileged_userns_clone=1 / kernel.apparmor_restrict_unprivileged_userns=0)",
    "seccomp": "uv sync (installs pyseccomp) and apt-get install libseccomp2",
    "cgroup": "run serve as root on a host with a writable cgroup2 mount (/sys/fs/cgroup or "
    "/sys/fs/cgroup/unified) and memory/pids controllers (v2, or v1 hierarchies)",
    "disk": "run serve as root (a size-limited tmpfs per workdir)",
    "landlock": "a kernel with CONFIG_SECURITY_LANDLOCK and lsm=...,landlock (not used yet)",
}


def doctor_report(mode: str, uid: int, gid: int) -> tuple[list[str], bool]:
    """Lines for ``mcpexec doctor`` and whether ``serve`` would start in ``mode``."""
    p = probe(mode, uid, gid)
    ok_mark, bad = "ok  ", "MISS"
    lines = [f"server uid {os.geteuid()}; tasks would run as uid {p.uid} gid {p.gid}", ""]

    def row(good: bool, what: str, detail: str, fix: str | None = None) -> None:
        lines.append(f"[{ok_mark if good else bad}] {what:<22} {detail}")
        if not good and fix:
            lines.append(f"       fix: {fix}")

    row(p.bwrap_error is None, "bwrap", p.bwrap_error or f"{p.bwrap} ({p.bwrap_version})",
        _FIX["bwrap"])  # fmt: skip
    row(p.seccomp_error is None, "seccomp", p.seccomp_error or "pyseccomp + kernel filter",
        _FIX["seccomp"])  # fmt: skip
    row(p.cgroup_kill is not None, "cgroup v2 tree kill", p.cgroup_kill or "no writable cgroup2",
        _FIX["cgroup"])  # fmt: skip
    for ctl in ("memory", "pids"):
        version = getattr(p.limits, ctl)
        row(version is not None, f"cgroup {ctl}", f"cgroup {version}" if version else "none",
            _FIX["cgroup"])  # fmt: skip
    row(p.disk_error is None, "workdir size limit", p.disk_error or "tmpfs per workdir",
        _FIX["disk"])  # fmt: skip
    row(p.landlock is not None, "landlock", f"ABI {p.landlock}" if p.landlock else "unavailable",
        _FIX["landlock"])  # fmt: skip
    lines.append("")
    would_start = True
    if mode == "none":
        lines.append("serve would run: none -- NO ISOLATION (tasks run as the server's uid)")
    elif mode == "strict":
        missing = p.missing_for_strict
        would_start = not missing
        if missing:
            lines.append("serve would REFUSE to start in strict mode; missing:")
            lines += [f"  - {m}" for m in missing]
        else:
            lines.append("serve would run: strict (every layer available)")
    elif p.bwrap_error:
        would_start = False
        lines.append("serve would REFUSE to start in default mode: bwrap does not work here")
        lines.append("  (MCPEXEC_SANDBOX=none runs without isolation)")
    else:
        lines.append("serve would run: default (bwrap)")
        lines += [f"  warning: {w}" for w in p.degraded]
    return lines, would_start


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
                _umount(point)
        return super()._remove_stale_workdirs()

    async def stop(self) -> None:
        for point in mounts_under(self.instance_dir):
            _umount(point)
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
            _mount_tmpfs(path, disk_mb, self.ex.uid, self.ex.gid)
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
        if not _umount(self.mounted):
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
