"""Writing outcomes: a finished job into ``completed/`` or ``failed/``, an invalid one into
``failed/``. Every file is written atomically (temporary dotfile, fsync, rename, directory
fsync) *before* the job leaves ``.processing/``, so a crash at any point leaves either the claim
(resumed at the next start, same run through the idempotency key) or the finished result.

Where the result goes: a JSON job is rewritten as itself plus ``"result"``; a text job (and any
file that is not a JSON object) is moved as it is, with ``NAME.result.json`` beside it.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from mcpexec.errors import McpexecError
from mcpexec.models import Run
from mcpexec.spool.eventlog import DaemonLog
from mcpexec.spool.files import Claimed, SpoolDirs, describe_mode, move, write_atomic
from mcpexec.spool.formats import Job, NotRegularFile
from mcpexec.spool.results import invalid_result, render, run_result, succeeded

SIDECAR = ".result.json"


def _sidecar(directory: Path, name: str, result: dict[str, Any]) -> None:
    write_atomic(directory / (name + SIDECAR), render({"file": name, "result": result}))


def _drop_claim(dirs: SpoolDirs, name: str) -> None:
    # No fsync of .processing/: an unlink lost in an OS crash brings the claim back, and its
    # resubmission (same idempotency key) finds the finished run and rewrites the same result.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(dirs.processing / name)


def write_result(
    dirs: SpoolDirs,
    job: Job,
    run: Run,
    stdout: bytes,
    stderr: bytes,
    full_stdout: bytes | None,
    cap: int,
) -> Path:
    """Write the finished job's result; returns where the job file now is."""
    target = dirs.completed if succeeded(run) else dirs.failed
    result = run_result(run, stdout, stderr, cap)
    if job.result_file is not None and full_stdout is not None and succeeded(run):
        write_atomic(dirs.completed / job.result_file, full_stdout)
    if job.original is not None:
        write_atomic(target / job.name, render({**job.original, "result": result}))
        _drop_claim(dirs, job.name)
    else:
        _sidecar(target, job.name, result)
        move(dirs.processing / job.name, target / job.name)
    return target / job.name


def write_invalid(dirs: SpoolDirs, claimed: Claimed, error: McpexecError) -> None:
    """Bad input never runs and is never lost: into ``failed/`` with status ``invalid``."""
    result = invalid_result(error)
    original: Any = None
    if claimed.name.endswith(".json"):
        with contextlib.suppress(ValueError):
            original = json.loads(claimed.data)
    if isinstance(original, dict):
        write_atomic(dirs.failed / claimed.name, render({**original, "result": result}))
        _drop_claim(dirs, claimed.name)
    else:
        _sidecar(dirs.failed, claimed.name, result)
        move(dirs.processing / claimed.name, dirs.failed / claimed.name)


def refuse_entry(dirs: SpoolDirs, name: str, events: DaemonLog | None) -> None:
    """A symlink, FIFO, device or directory in ``pending/``: moved (the rename does not follow
    or open it) into ``failed/`` with an ``invalid`` result."""
    _refuse(dirs, dirs.pending / name, name, events)


def refuse_processing(dirs: SpoolDirs, name: str, what: str, events: DaemonLog | None) -> None:
    _refuse(dirs, dirs.processing / name, name, events, what)


def _refuse(
    dirs: SpoolDirs, src: Path, name: str, events: DaemonLog | None, what: str | None = None
) -> None:
    try:
        what = what or describe_mode(os.lstat(src).st_mode)
    except FileNotFoundError:
        return
    error = NotRegularFile(f"{name}: {what}, not a regular file; refused without opening it")
    _sidecar(dirs.failed, name, invalid_result(error))
    try:
        move(src, dirs.failed / name)
    except FileNotFoundError:
        return  # another spool process moved it first
    except OSError:
        # A directory cannot replace an existing failed/NAME: keep it under a unique name.
        with contextlib.suppress(OSError):
            move(src, dirs.failed / f"{name}.{os.getpid()}.refused")
    if events is not None:
        events.event("invalid", name, code=error.code, message=error.message)
