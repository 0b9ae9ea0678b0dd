"""A stdio server under bubblewrap (``"sandbox": true`` in its config): the gateway's own
command line, like the executor's sandbox but for a long-lived server (the gateway never
imports the executor).

What the server sees: read-only ``/usr`` (+ the merged-usr symlinks) and a minimal ``/etc``,
a fresh ``/proc`` and ``/dev``, a private ``/tmp`` (also its ``HOME`` unless its ``env`` sets
one), the paths its config lists under ``read_only`` and ``writable``, and nothing else: no
``/home``, ``/root``, ``/run``, host sockets or the rest of the host's ``/tmp``. Namespaces:
user, pid, mount, ipc, uts, cgroup and net (``--share-net`` only with ``"network": true``).
``--die-with-parent``: the server dies with mcpexec; the gateway's group kill reaches bwrap.
The runs' default seccomp denylist (``--seccomp``, from the injected confinement) is loaded
before the server's first instruction.
The environment is the one the gateway gives the server (no secret on the command line).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
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
    config: ServerConfig, argv: Sequence[str], bwrap: str, *, seccomp_fd: int | None = None
) -> list[str]:
    """The bwrap command line that runs ``argv`` as ``config`` says; ``seccomp_fd``: a filter
    bwrap loads before it execs the server (the descriptor must reach bwrap: ``pass_fds``)."""
    opts = [bwrap, "--unshare-all"]
    if config.network:
        opts.append("--share-net")
    opts += ["--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    opts += ["--ro-bind", "/usr", "/usr"]
    for link, target in (("/bin", "usr/bin"), ("/sbin", "usr/sbin"), ("/lib", "usr/lib"),
                         ("/lib64", "usr/lib64")):  # fmt: skip
        opts += ["--symlink", target, link]
    for path in (*_ETC_RO, *(_NET_RO if config.network else ())):
        opts += ["--ro-bind-try", path, path]
    opts += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]  # noqa: S108
    for path in config.read_only:
        opts += ["--ro-bind", path, path]
    for path in config.writable:
        opts += ["--bind", path, path]
    if "HOME" not in config.env:
        opts += ["--setenv", "HOME", "/tmp"]  # noqa: S108
    bound = (*config.read_only, *config.writable)
    inside = config.cwd is not None and any(
        config.cwd == p or config.cwd.startswith(p.rstrip("/") + "/") for p in bound
    )
    opts += ["--chdir", config.cwd if inside and config.cwd else "/tmp"]  # noqa: S108
    if seccomp_fd is not None:
        opts += ["--seccomp", str(seccomp_fd)]
    return [*opts, "--", *argv]
