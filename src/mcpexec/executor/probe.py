"""Capability probes of the sandbox (bwrap, cgroup limits, seccomp, Landlock, workdir size
limits) and the report of ``mcpexec doctor``."""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcpexec.executor import bwrap as bw
from mcpexec.executor import seccomp
from mcpexec.executor.cgroup import LimitSupport, find_cgroup2_mount, probe_limits
from mcpexec.executor.mounts import mount_tmpfs, umount

log = logging.getLogger(__name__)

MODES = ("default", "strict", "none")
DEFAULT_ROOT_WORK_DIR = Path("/tmp/mcpexec-sandbox")  # noqa: S108 - created 0711 root, checked
_LANDLOCK_CREATE_RULESET = 444  # the same number on every architecture (asm-generic)
_LANDLOCK_CREATE_RULESET_VERSION = 1


# --- small syscalls ----------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)  # libc is already loaded: no ldconfig run


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
    """The uid/gid of the run's processes: the configured ones for a root server, else ours."""
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
    """``(version, error)``: run a trivial sandbox as the sandbox uid, binding ``bind`` (a directory
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


def probe_status_init(bwrap: str, uid: int, gid: int) -> str | None:
    """The sandbox's status-reporting pid 1 (``bwrap.STATUS_INIT``) if it works here: a shell
    that SIGKILLs itself must be reported as raw wait status 9. ``None``: use bwrap's init."""
    init = bw.status_init()
    if init is None:
        return None
    read_end, write_end = os.pipe()
    try:
        argv = [
            bwrap, "--unshare-all", "--unshare-user", "--die-with-parent", "--as-pid-1",
            "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin",
            "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
            "--proc", "/proc", "--dev", "/dev",
            "--", init, "-e", bw.STATUS_INIT, str(write_end), "/bin/sh", "-c", "kill -9 $$",
        ]  # fmt: skip
        subprocess.run(
            argv,
            capture_output=True,
            timeout=20,
            check=False,
            env={},
            pass_fds=(write_end,),
            preexec_fn=_drop(uid, gid),  # syscalls only
        )
        os.close(write_end)
        write_end = -1
        os.set_blocking(read_end, False)
        report = os.read(read_end, 64)
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    return init if report == b"9\n" else None


def probe_disk(root: bool) -> str | None:
    """Why no size-limited tmpfs workdir can be mounted here, or ``None``."""
    if not root:
        return "mounting a size-limited tmpfs workdir needs a root server"
    with tempfile.TemporaryDirectory(prefix="mcpexec-probe-") as tmp:
        target = Path(tmp)
        try:
            mount_tmpfs(target, 1, 0, 0)
        except OSError as exc:
            return str(exc)
        umount(target)
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
    lines = [f"server uid {os.geteuid()}; runs would execute as uid {p.uid} gid {p.gid}", ""]

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
        lines.append("serve would run: none -- NO ISOLATION (runs execute as the server's uid)")
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
