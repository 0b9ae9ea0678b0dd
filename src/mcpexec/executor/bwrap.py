"""The bubblewrap command line (as tested by ``tests/sandbox/test_abuse.py``).

All options travel through ``--args FD`` (a memfd, NUL-separated): ``--setenv`` values (secrets
included) and host paths never appear in ``/proc/<bwrap>/cmdline``. Only ``--`` and the run's own
argv follow on the real command line (bwrap's ``--args`` does not carry the command).

What the run's processes see: read-only ``/usr`` (+ the merged-usr symlinks), a minimal ``/etc``
(loader cache, certificates, timezone, Python's config, synthesized ``passwd``/``group``), a fresh
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

#: The sandbox's pid 1 (``--as-pid-1``), run by ``/usr/bin/perl`` (perl-base is Essential on
#: Debian/Ubuntu; no modules, so startup is ~2 ms). bwrap and its own init report a child killed
#: by signal N as exit status 128+N, indistinguishable from ``exit 128+N``; this init forks the
#: run's command, reaps every orphan (as an init must), writes the command's raw wait status to the
#: status descriptor (argv[1], close-on-exec so the run never inherits it) and exits when the
#: command does: the kernel then kills the rest of the namespace, as with bwrap's init under
#: ``--die-with-parent``. As pid 1 it gets no signal it has no handler for (SIGTERM from the host
#: included), so the grace SIGTERM reaches the run's processes only. A run could forge the status
#: through ``/proc/1/fd``: that only changes its own exit into a signal it could have sent itself.
STATUS_INIT = (
    '$0 = "mcpexec-init";'  # its cmdline: not the run's argv (ps, and the tests' markers)
    ' open(my $st, ">&=", shift @ARGV) or exit 125; fcntl($st, 2, 1);'  # F_SETFD, FD_CLOEXEC
    " my $pid = fork; defined $pid or exit 125;"
    " if (!$pid) { exec { $ARGV[0] } @ARGV;"
    ' print STDERR "mcpexec: cannot execute $ARGV[0]: $!\\n"; exit 127 }'
    " while (1) { my $p = waitpid(-1, 0); exit 125 if $p < 0; next if $p != $pid;"
    ' my $s = $?; syswrite($st, "$s\\n"); exit(($s & 127) ? 128 + ($s & 127) : $s >> 8) }'
)
STATUS_INIT_PATH = "/usr/bin/perl"


def status_init() -> str | None:
    """The interpreter of :data:`STATUS_INIT` when the sandbox can see it (it binds ``/usr``)."""
    path = STATUS_INIT_PATH
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


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
    run_argv: list[str],
    *,
    workdir: str,
    env: dict[str, str],
    uid: int,
    gid: int,
    network: bool,
    tmp_bytes: int,
    seccomp_fd: int | None,
    extra_ro: tuple[str, ...] = (),
    status: tuple[str, int] | None = None,
    extra_rw: tuple[str, ...] = (),
) -> BwrapSpawn:
    """The bwrap invocation for one attempt; ``env`` is the run's whole environment;
    ``extra_rw``: directories bound writable at their own path (a workflow's workspace). ``status``:
    (the :data:`STATUS_INIT` interpreter, the descriptor it reports the wait status on); the
    caller owns and closes that descriptor."""
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
        for path in extra_rw:
            opts += ["--bind", path, path]
        opts += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/", "--clearenv"]
        for name, value in env.items():
            opts += ["--setenv", name, value]
        if seccomp_fd is not None:
            opts += ["--seccomp", str(seccomp_fd)]
        if status is not None:
            opts.append("--as-pid-1")
        args_fd = _memfd("bwrap-args", b"".join(o.encode() + b"\0" for o in opts))
        fds.append(args_fd)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    init = [] if status is None else [status[0], "-e", STATUS_INIT, str(status[1])]
    return BwrapSpawn([bwrap, "--args", str(args_fd), "--", *init, *run_argv], fds)
