"""Killing a task's whole process tree, for sure.

``start_new_session`` + ``killpg`` misses a double-forked ``setsid`` daemon (measured), so two
mechanisms exist, chosen once per executor:

* **cgroup** (preferred): each attempt gets a cgroup v2 leaf under this executor's *instance*
  cgroup (``<cgroup2 mount>/mcpexec/<instance>/<attempt>``). The child joins it in ``preexec``
  before exec, so every descendant is inside, whatever it does. Kill = ``cgroup.kill`` (the kernel
  kills every member, new forks included), then wait for ``populated 0`` and ``rmdir``.
* **environ** (fallback, e.g. without a writable cgroup2 mount): ``killpg`` the session, then sweep
  ``/proc`` for processes whose environment holds the attempt's ``MCPEXEC_RUN_TOKEN`` (every task
  process inherits it), freezing them with SIGSTOP until no new one appears, then SIGKILL.
  **Limitation:** a daemon that leaves the process group *and* scrubs or rewrites its environment
  (``execve`` with a clean env, ``clearenv`` + ``setproctitle``) escapes this mode.

The watchdog: one helper process per executor holds the read end of a pipe whose write end only
the server has. When the server dies (even by SIGKILL) the pipe hits EOF and the watchdog kills
everything under the instance: ``cgroup.kill`` on the instance cgroup (it kills the subtree), or
the environ sweep for ``MCPEXEC_INSTANCE=<id>``. This module imports only the standard library, so
it is itself the watchdog program: ``python -I -S tree.py watchdog MODE TARGET``.

The per-attempt and per-executor objects built on these primitives are in
:mod:`mcpexec.executor.mechanism`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

CGROUP_CANDIDATES = (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))
CGROUP_DIR = "mcpexec"
RUN_TOKEN_VAR = "MCPEXEC_RUN_TOKEN"  # noqa: S105 - a variable name, not a secret
INSTANCE_VAR = "MCPEXEC_INSTANCE"
POLL_S = 0.01


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


# --- cgroup v2 ---------------------------------------------------------------------------------


def find_cgroup2_mount() -> Path | None:
    """The first candidate that is a cgroup2 mount we may write to."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    cgroup2 = {Path(line.split()[1]) for line in mounts if line.split()[2:3] == ["cgroup2"]}
    for candidate in CGROUP_CANDIDATES:
        if candidate in cgroup2 and os.access(candidate, os.W_OK):
            return candidate
    return None


def cgroup_populated(path: Path) -> bool:
    try:
        events = (path / "cgroup.events").read_text()
    except FileNotFoundError:
        return False
    return "populated 1" in events


def kill_cgroup(path: Path, timeout: float = 5.0) -> bool:
    """``cgroup.kill`` the subtree, wait (bounded) until it is empty, remove it. Synchronous, for
    the watchdog and start-up cleanup. Returns whether the subtree is gone."""
    with contextlib.suppress(OSError):
        (path / "cgroup.kill").write_text("1")
    deadline = time.monotonic() + timeout
    while cgroup_populated(path) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    return remove_cgroup(path)


def remove_cgroup(path: Path) -> bool:
    # cgroupfs directories hold only virtual files: rmdir leaves first, bottom-up.
    for root, dirs, _files in os.walk(path, topdown=False):
        for name in dirs:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(root, name))
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


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


# --- the watchdog ------------------------------------------------------------------------------


class Watchdog:
    """Owns the helper process and the write end of its lifeline pipe."""

    def __init__(self, args: list[str]) -> None:
        read_end, self._write_end = os.pipe()  # both non-inheritable: tasks never hold them
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", __file__, "watchdog", *args],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={},  # no MCPEXEC_INSTANCE: the environ sweep must not find the watchdog
                start_new_session=True,  # a Ctrl-C for the server's process group spares it
                close_fds=True,
            )
        except BaseException:
            os.close(self._write_end)
            raise
        finally:
            os.close(read_end)

    async def stop(self, timeout: float = 5.0) -> None:
        """Close the lifeline; the watchdog sweeps (nothing should be left) and exits."""
        if self._write_end >= 0:
            os.close(self._write_end)
            self._write_end = -1
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() >= deadline:
                self.proc.kill()
                self.proc.wait()
                return
            await asyncio.sleep(POLL_S)


def _watchdog_main(mode: str, target: str) -> None:
    while True:  # block until the server is gone: EOF on the lifeline
        try:
            if not os.read(0, 512):
                break
        except InterruptedError:
            continue
        except OSError:
            break
    if mode == "cgroup":
        kill_cgroup(Path(target))
    else:
        sweep_env(INSTANCE_VAR, target)


if __name__ == "__main__" and sys.argv[1:2] == ["watchdog"]:
    _watchdog_main(sys.argv[2], sys.argv[3])
