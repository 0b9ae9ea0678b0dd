"""The watchdog: kills every process of this server's runs when the server dies, even by SIGKILL.

One helper process per executor holds the read end of a pipe whose write end only the server has.
When the server dies the pipe hits EOF and the watchdog kills everything under the instance:
``cgroup.kill`` on the instance cgroup (it kills the subtree), or the environ sweep for
``MCPEXEC_INSTANCE=<id>``. This file is itself the watchdog program
(``python -I -S watchdog.py watchdog MODE TARGET``); it and what it imports
(:mod:`~mcpexec.executor.cgroup`, :mod:`~mcpexec.executor.procfs`) use only the standard library.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

POLL_S = 0.01


class Watchdog:
    """Owns the helper process and the write end of its lifeline pipe."""

    def __init__(self, args: list[str]) -> None:
        read_end, self._write_end = os.pipe()  # both non-inheritable: runs never hold them
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
    # Imported before blocking: the package's files need not be readable once the server died.
    from mcpexec.executor.cgroup import kill_cgroup
    from mcpexec.executor.procfs import INSTANCE_VAR, sweep_env

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
    # Run by path with ``-I -S``: neither site-packages nor the script's directory is on
    # sys.path, so put the directory holding the ``mcpexec`` package there (stdlib-only modules).
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    _watchdog_main(sys.argv[2], sys.argv[3])
