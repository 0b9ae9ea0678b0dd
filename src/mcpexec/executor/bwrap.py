"""The bubblewrap command line (the argv of ``/work/shared/notes/sandbox.md`` §3.3, as tested).

All options travel through ``--args FD`` (a memfd, NUL-separated): ``--setenv`` values (secrets
included) and host paths never appear in ``/proc/<bwrap>/cmdline``. Only ``--`` and the task's own
argv follow on the real command line (bwrap's ``--args`` does not carry the command).

What the task sees: read-only ``/usr`` (+ the merged-usr symlinks), a minimal ``/etc`` (loader
cache, certificates, timezone, Python's config, synthesized ``passwd``/``group``), a fresh
``/proc`` and ``/dev``, a private size-limited ``/tmp``, its workdir read-write at ``/work`` (the
only writable host path), and nothing else: no ``/home``, ``/root``, ``/run``, ``/var``, host
sockets or ``/sys``. Namespaces: user, pid, mount, ipc, uts, cgroup and net (``--share-net`` only
when the run asks for network).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

SANDBOX_HOME = "/work"
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
SANDBOX_HOSTNAME = "sandbox"

_ETC_RO = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/localtime",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/nsswitch.conf",
    "/etc/python3",
    "/etc/python3.11",
    "/etc/mime.types",
)
_NET_RO = ("/etc/resolv.conf", "/etc/hosts", "/etc/host.conf", "/etc/gai.conf")


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


@dataclass
class BwrapSpawn:
    """The argv to exec and the descriptors the child must inherit (the caller closes them in
    the parent after the spawn with :meth:`close`)."""

    argv: list[str]
    pass_fds: list[int] = field(default_factory=list)

    def close(self) -> None:
        for fd in self.pass_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.pass_fds = []


def build(
    bwrap: str,
    task_argv: list[str],
    *,
    workdir: str,
    env: dict[str, str],
    uid: int,
    gid: int,
    network: bool,
    tmp_bytes: int,
    seccomp_fd: int | None,
    extra_ro: tuple[str, ...] = (),
) -> BwrapSpawn:
    """The bwrap invocation for one attempt; ``env`` is the task's whole environment."""
    fds: list[int] = [] if seccomp_fd is None else [seccomp_fd]
    try:
        passwd = (
            f"root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
            f"sandbox:x:{uid}:{gid}:sandbox:{SANDBOX_HOME}:/usr/sbin/nologin\n"
        )
        group = f"root:x:0:\nsandbox:x:{gid}:\n"
        if uid == 0:  # an unprivileged server whose uid is 0 inside: one line suffices
            passwd = f"root:x:0:0:root:{SANDBOX_HOME}:/usr/sbin/nologin\n"
            group = "root:x:0:\n"
        passwd_fd = _memfd("passwd", passwd.encode())
        fds.append(passwd_fd)
        group_fd = _memfd("group", group.encode())
        fds.append(group_fd)
        opts = ["--unshare-all"]
        if network:
            opts.append("--share-net")
        opts += [
            "--unshare-user",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--hostname",
            SANDBOX_HOSTNAME,
            "--ro-bind",
            "/usr",
            "/usr",
            "--symlink",
            "usr/bin",
            "/bin",
            "--symlink",
            "usr/sbin",
            "/sbin",
            "--symlink",
            "usr/lib",
            "/lib",
            "--symlink",
            "usr/lib64",
            "/lib64",
        ]
        for path in (*_ETC_RO, *(_NET_RO if network else ())):
            opts += ["--ro-bind-try", path, path]
        for path in extra_ro:
            opts += ["--ro-bind-try", path, path]
        opts += ["--ro-bind-data", str(passwd_fd), "/etc/passwd"]
        opts += ["--ro-bind-data", str(group_fd), "/etc/group"]
        opts += ["--size", str(tmp_bytes), "--perms", "1777", "--tmpfs", "/tmp"]  # noqa: S108
        opts += ["--bind", workdir, SANDBOX_HOME, "--chdir", SANDBOX_HOME]
        opts += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/", "--clearenv"]
        for name, value in env.items():
            opts += ["--setenv", name, value]
        if seccomp_fd is not None:
            opts += ["--seccomp", str(seccomp_fd)]
        args_fd = _memfd("bwrap-args", b"".join(o.encode() + b"\0" for o in opts))
        fds.append(args_fd)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return BwrapSpawn([bwrap, "--args", str(args_fd), "--", *task_argv], fds)
