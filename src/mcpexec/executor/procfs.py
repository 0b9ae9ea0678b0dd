"""/proc primitives the executor's process tree, watchdog and start-up cleanup are built on.

* **Owners.** An instance id (``<pid>-<starttime>-<random>``) names the server process that made
  a workdir, a cgroup or an environ marker, so state a dead server left behind is recognised (the
  start time guards against pid reuse).
* **Environ markers.** Every process of a run inherits ``MCPEXEC_RUN_TOKEN`` and
  ``MCPEXEC_INSTANCE``; :func:`sweep_env` finds them in ``/proc/PID/environ`` and signals them,
  freezing with SIGSTOP first so a fork bomb cannot outrun a SIGKILL sweep. **Limitation:** a
  daemon that leaves the process group *and* scrubs or rewrites its environment (``execve`` with a
  clean env, ``clearenv`` + ``setproctitle``) escapes the sweep: the cgroup tree kill
  (:mod:`mcpexec.executor.cgroup`) has no such gap.

Standard library only: the watchdog program (:mod:`mcpexec.executor.watchdog`) imports it.
"""

from __future__ import annotations

import os
import secrets
import signal
from pathlib import Path

RUN_TOKEN_VAR = "MCPEXEC_RUN_TOKEN"  # noqa: S105 - a variable name, not a secret
INSTANCE_VAR = "MCPEXEC_INSTANCE"
POLL_S = 0.01


def read_lines(path: str) -> list[str]:
    """The lines of a ``/proc`` (or cgroupfs) file; none when it cannot be read."""
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


# --- owners: an instance id names its server process, so stale state can be recognised ---------


def proc_starttime(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (field 22 of ``/proc/PID/stat``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def owner_alive(pid: int, starttime: int) -> bool:
    # Comparing start times guards against the pid having been reused by another process.
    return proc_starttime(pid) == starttime


def new_instance_id() -> str:
    pid = os.getpid()
    return f"{pid}-{proc_starttime(pid) or 0}-{secrets.token_hex(4)}"


def parse_instance_id(name: str) -> tuple[int, int] | None:
    parts = name.split("-")
    if len(parts) != 3 or not (parts[0].isdigit() and parts[1].isdigit()):
        return None
    return int(parts[0]), int(parts[1])


# --- environ sweep -----------------------------------------------------------------------------


def _environ(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return b"\0" + f.read()
    except OSError:
        return b""


def pids_with_env(var: str, value: str | None = None) -> dict[int, str]:
    """Processes whose environment sets ``var`` (to ``value`` if given): pid → value."""
    needle = b"\0" + var.encode() + b"="
    me = os.getpid()
    found: dict[int, str] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        env = _environ(int(name))
        at = env.find(needle)
        if at < 0:
            continue
        start = at + len(needle)
        end = env.find(b"\0", start)
        got = env[start : end if end >= 0 else len(env)].decode(errors="replace")
        if value is None or got == value:
            found[int(name)] = got
    return found


def _signal_if_marked(pid: int, sig: int, needle: bytes) -> None:
    # Pin the process with a pidfd, then re-check the marker: a pid freed and reused between
    # the scan and the signal then gets nothing.
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        if needle in _environ(pid) + b"\0":
            signal.pidfd_send_signal(fd, sig)
    except OSError:
        pass
    finally:
        os.close(fd)


def sweep_env(var: str, value: str, sig: int = signal.SIGKILL, rounds: int = 100) -> int:
    """Signal every process marked ``var=value``. For SIGKILL, first freeze them all with SIGSTOP
    (rescanning until no new one appears: a stopped process cannot fork), then kill."""
    needle = f"\0{var}={value}\0".encode()
    if sig != signal.SIGKILL:
        pids = pids_with_env(var, value)
        for pid in pids:
            _signal_if_marked(pid, sig, needle)
        return len(pids)
    stopped: set[int] = set()
    for _ in range(rounds):
        new = set(pids_with_env(var, value)) - stopped
        if not new:
            break
        for pid in new:
            _signal_if_marked(pid, signal.SIGSTOP, needle)
        stopped |= new
    for pid in stopped:
        _signal_if_marked(pid, signal.SIGKILL, needle)
    return len(stopped)
