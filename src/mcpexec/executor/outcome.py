"""Classifying how an attempt's main process ended: exit code, signal and failure kind.

Pure: the supervisor passes in what it observed (return code, why it stopped the tree, the CPU
time used); the sandbox may refine the result afterwards (an OOM kill, ``AttemptHooks.reclassify``).
"""

from __future__ import annotations

import signal
from collections.abc import Mapping

from mcpexec.models import Failure, FailureKind


def signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def classify(
    returncode: int,
    reason: FailureKind | None,
    *,
    timeout_s: float,
    cpu_limit_s: int | None,
    cpu_used_s: float | None,
    duration_s: float,
) -> tuple[int | None, int | None, Failure | None]:
    """``(exit_code, signal, failure)`` for a finished main process."""
    exit_code, sig = (None, -returncode) if returncode < 0 else (returncode, None)
    if reason is FailureKind.TIMEOUT:
        return exit_code, sig, Failure(kind=reason, message=f"timed out after {timeout_s:g} s")
    if reason is FailureKind.CANCELLED:
        return exit_code, sig, Failure(kind=reason, message="cancelled")
    if returncode == 0:
        return 0, None, None
    if cpu_limit_s is not None:
        # SIGXCPU is the soft limit; SIGKILL we did not send is the hard one. A shell running the
        # burner as a child reports them as 128+N. Only a SIGKILL needs evidence of CPU use: the
        # tree's cgroup total if known, else the wall time (a single thread's CPU ≤ wall time).
        died = sig if sig is not None else (exit_code or 0) - 128
        used = cpu_used_s if cpu_used_s is not None else duration_s
        if died == signal.SIGXCPU or (died == signal.SIGKILL and used >= 0.95 * cpu_limit_s):
            msg = f"CPU time limit of {cpu_limit_s} s exceeded"
            return exit_code, sig, Failure(kind=FailureKind.CPU_LIMIT, message=msg)
    if sig is not None:
        msg = f"killed by {signame(sig)}"
        return None, sig, Failure(kind=FailureKind.SIGNAL, message=msg)
    return (
        exit_code,
        None,
        Failure(kind=FailureKind.EXIT_CODE, message=f"exited with code {exit_code}"),
    )


def scrub_paths(text: str, replacements: Mapping[str, str]) -> str:
    """``text`` with each server path of ``replacements`` (longest first, so a workdir goes before
    the directory holding it) replaced by what the run may see instead: a failure message or a
    note is shown to the run's submitter, who must never learn the server's paths (its
    ``$MCPEXEC_HOME`` included)."""
    for path in sorted((p for p in replacements if p), key=len, reverse=True):
        text = text.replace(path, replacements[path])
    return text
