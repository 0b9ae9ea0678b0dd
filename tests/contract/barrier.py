"""A start barrier between a contract test and its worker processes, without polling: each
child says ``ready`` on its stdout and blocks on its stdin until the test has heard every
child and writes ``go`` to each (so that the processes really overlap). The child's result
follows on stdout, read by ``communicate``."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import anyio

READY, GO = "ready", "go"


def wait_for_go() -> None:
    """The child's side (blocking: run it in a thread)."""
    print(READY, flush=True)
    if sys.stdin.readline().strip() != GO:
        raise SystemExit("no go signal")


async def release(procs: list[subprocess.Popen[str]], timeout_s: float = 60) -> None:
    """The test's side: wait until every child is ready, then let them all go. A child that
    dies or stays silent fails the test (and every child is killed)."""
    try:
        with anyio.fail_after(timeout_s):
            for proc in procs:
                assert proc.stdout is not None
                line = await anyio.to_thread.run_sync(proc.stdout.readline, abandon_on_cancel=True)
                if line.strip() != READY:
                    proc.kill()
                    raise AssertionError(f"a worker process did not start: {proc.communicate()}")
    except BaseException:
        for proc in procs:
            with contextlib.suppress(OSError):
                proc.kill()
        raise
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(GO + "\n")
        proc.stdin.flush()
