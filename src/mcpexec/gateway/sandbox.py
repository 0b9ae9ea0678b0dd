"""A stdio server under bubblewrap (``"sandbox": true`` in its config): the gateway's own
command line, like the executor's sandbox but for a long-lived server (the gateway never
imports the executor).

What the server sees: read-only ``/usr`` (+ the merged-usr symlinks) and a minimal ``/etc``,
a fresh ``/proc`` and ``/dev``, a private ``/tmp`` (also its ``HOME`` unless its ``env`` sets
one), the paths its config lists under ``read_only`` and ``writable``, and nothing else: no
``/home``, ``/root``, ``/run``, host sockets or the rest of the host's ``/tmp``. Namespaces:
pid, mount, ipc, uts, cgroup and net (``--share-net`` only with ``"network": true``).

Who the server is. Run by an unprivileged ``serve``, bwrap makes a user namespace of serve's own
user (``--unshare-all``). Run by root, a user namespace would leave the server the host's uid 0,
owner of every root-owned file, so bwrap runs privileged instead: it unshares every namespace
but the user one, mounts the binds as root (their parents need not be traversable by anyone
else), then ``setpriv`` (util-linux) switches to the confinement's ``drop_to`` (serve's
``sandbox_uid``/``sandbox_gid``) with no supplementary groups, no capabilities, an empty
bounding set and ``no_new_privs`` before the server's first instruction. Its ``writable``
paths must then be writable by that user, and the bound files readable by it, as for runs.
``--die-with-parent``: the server dies with mcpexec; the gateway's group kill reaches bwrap.
The runs' default seccomp denylist (``--seccomp``, from the injected confinement) is loaded
before the server's first instruction.
The environment is the one the gateway gives the server (no secret on the command line).
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Protocol

from mcpexec.gateway.config import ServerConfig


class Confined(Protocol):
    """One server process's confinement, made by :meth:`Confinement.confine` before the spawn.

    ``argv``: what to spawn instead (e.g. a prefix that joins a cgroup leaf and sets rlimits,
    then ``exec``s the server's argv: the pid stays the one the transport watches). ``limits``:
    each limit in force and how it is enforced (``GET /api/v1/servers`` shows it).
    ``release()`` is called once the transport closed the process group: it kills whatever is
    still in the leaf (a child that left the group) and removes it. Synchronous, never raises.
    """

    argv: list[str]
    limits: Mapping[str, object]

    def release(self) -> None: ...


class Confinement(Protocol):
    """The domain's process confinement of stdio servers (the gateway never imports the
    executor; the App injects one built on it). ``confine`` may raise an ``McpexecError``
    (e.g. ``DownstreamUnavailable``) to refuse the spawn."""

    def confine(self, config: ServerConfig, argv: Sequence[str]) -> Confined: ...

    def drop_to(self) -> tuple[int, int] | None:
        """``(uid, gid)`` a sandboxed server runs as (serve runs as root), or ``None``: it
        stays serve's own user, inside a user namespace."""
        ...

    def seccomp_fd(self) -> int | None:
        """A fresh descriptor of the runs' default seccomp filter (the caller owns and closes
        it), or ``None`` where this host cannot build one (then a sandboxed server runs
        without; ``GET /api/v1/servers`` shows it in its ``limits``)."""
        ...


_ETC_RO = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/localtime",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
)
_NET_RO = ("/etc/resolv.conf", "/etc/hosts", "/etc/host.conf", "/etc/gai.conf")


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def sandboxed_argv(
    config: ServerConfig,
    argv: Sequence[str],
    bwrap: str,
    *,
    seccomp_fd: int | None = None,
    drop_to: tuple[int, int] | None = None,
    setpriv: str | None = None,
) -> list[str]:
    """The bwrap command line that runs ``argv`` as ``config`` says; ``seccomp_fd``: a filter
    bwrap loads before it execs the server (the descriptor must reach bwrap: ``pass_fds``);
    ``drop_to``: the ``(uid, gid)`` to become through ``setpriv`` (bwrap then runs as root,
    without a user namespace: the module docstring)."""
    opts = [bwrap, *_namespaces(config, privileged=drop_to is not None)]
    opts += ["--ro-bind", "/usr", "/usr"]
    for link, target in (("/bin", "usr/bin"), ("/sbin", "usr/sbin"), ("/lib", "usr/lib"),
                         ("/lib64", "usr/lib64")):  # fmt: skip
        opts += ["--symlink", target, link]
    opts += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]  # noqa: S108
    etc = (*_ETC_RO, *(_NET_RO if config.network else ()))
    bound = (*config.read_only, *config.writable)
    if drop_to is not None:
        # Privileged bwrap makes a bind's missing parents 0700: the dropped user must be able
        # to walk to what it is given.
        for parent in _parents((*etc, *bound)):
            opts += ["--perms", "0755", "--dir", parent]
    for path in etc:
        opts += ["--ro-bind-try", path, path]
    for path in config.read_only:
        opts += ["--ro-bind", path, path]
    for path in config.writable:
        opts += ["--bind", path, path]
    if "HOME" not in config.env:
        opts += ["--setenv", "HOME", "/tmp"]  # noqa: S108
    inside = config.cwd is not None and any(
        config.cwd == p or config.cwd.startswith(p.rstrip("/") + "/") for p in bound
    )
    opts += ["--chdir", config.cwd if inside and config.cwd else "/tmp"]  # noqa: S108
    if seccomp_fd is not None:
        opts += ["--seccomp", str(seccomp_fd)]
    opts.append("--")
    if drop_to is not None:
        assert setpriv is not None
        uid, gid = drop_to
        opts += [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
        opts += ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    return [*opts, *argv]


def unwritable(paths: Sequence[str], uid: int, gid: int) -> list[str]:
    """Which of ``paths`` the user ``uid``:``gid`` (no supplementary groups) cannot write to,
    by their mode bits (a missing path is bwrap's to report)."""
    found = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if st.st_uid == uid:
            bit = stat.S_IWUSR
        elif st.st_gid == gid:
            bit = stat.S_IWGRP
        else:
            bit = stat.S_IWOTH
        if not st.st_mode & bit:
            found.append(path)
    return found


def _namespaces(config: ServerConfig, *, privileged: bool) -> list[str]:
    """Namespaces and capabilities: a user namespace of serve's user, or (``privileged``: bwrap
    runs as root) every namespace but that one and only what setpriv needs to switch user and
    empty the bounding set (its setuid() to a non-zero uid clears the rest)."""
    common = ["--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    if not privileged:
        return ["--unshare-all", *(["--share-net"] if config.network else []), *common]
    opts = ["--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
    opts += [] if config.network else ["--unshare-net"]
    opts += common
    for cap in ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"):
        opts += ["--cap-add", cap]
    return opts


def setpriv_path() -> str | None:
    """``setpriv`` where the sandbox sees it too (under ``/usr``, the only host tree bound)."""
    found = shutil.which("setpriv", path="/usr/bin:/usr/sbin:/bin:/sbin")
    if found is None:
        return None
    real = os.path.realpath(found)
    return real if real.startswith("/usr/") else None


_READ_ONLY_TREES = ("usr", "bin", "sbin", "lib", "lib64")  # /usr and its links, bound read-only


def _parents(paths: Sequence[str]) -> list[str]:
    """The ancestor directories of ``paths`` bwrap has to create, parents first (none under
    ``/usr``: it is bound read-only and has what it has)."""
    found: dict[str, None] = {}
    for path in paths:
        parts = PurePosixPath(path).parts[1:-1]
        if parts and parts[0] not in _READ_ONLY_TREES:
            for depth in range(1, len(parts) + 1):
                found.setdefault("/" + "/".join(parts[:depth]), None)
    return list(found)
