"""The executor contract: an execution request and limits in, a result out.

The executor knows nothing of runs, stores or retries. It owns the OS side: working directory,
environment, process group / cgroup, deadline and cancellation with kill escalation, output capture
with caps, artifact collection and the progress/result side channels. A sandbox backend is another
``Executor`` implementation; the worker does not change.
"""

from __future__ import annotations

import abc
import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from mcpexec.models import ExecSpec, Failure, Progress, Stream


@dataclass(frozen=True, slots=True)
class EffectiveLimits:
    """Limits with server defaults applied (no ``None``), as enforced for one attempt."""

    timeout_s: float
    cpu_s: int | None
    memory_mb: int | None
    file_size_mb: int
    open_files: int
    max_output_bytes: int
    max_artifacts: int = 100
    max_artifact_bytes: int = 100 * 1024 * 1024
    kill_grace_s: float = 2.0
    #: Processes (cgroup ``pids.max``) and workdir bytes (a size-limited tmpfs); enforced by
    #: the sandbox backend when the host allows. The plain subprocess executor (sandbox
    #: ``none``) does not enforce them and records them as ``"not enforced (sandbox none)"``.
    pids: int | None = None
    disk_mb: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "timeout_s": self.timeout_s,
            "cpu_s": self.cpu_s,
            "memory_mb": self.memory_mb,
            "pids": self.pids,
            "disk_mb": self.disk_mb,
            "file_size_mb": self.file_size_mb,
            "open_files": self.open_files,
            "max_output_bytes": self.max_output_bytes,
        }


@dataclass(frozen=True, slots=True)
class ExecRequest:
    run_id: str
    attempt: int
    spec: ExecSpec
    limits: EffectiveLimits
    #: A workflow step's workspace (issue 16): the sandbox binds it writable at the same path.
    workspace: str | None = None
    #: Hand the output still buffered when the process ends back in ``ExecResult.log_tail``
    #: instead of delivering it to the sink (the worker stores it with the finish).
    output_tail_in_result: bool = False


class ExecSink(Protocol):
    """Where the executor reports while the process runs. Calls are awaited in order per stream."""

    async def output(self, stream: Stream, data: bytes) -> None: ...

    async def progress(self, progress: Progress) -> None: ...

    async def artifact(self, name: str, file: BinaryIO, size: int) -> None:
        """Called after the process tree is gone, once per collected artifact. ``file`` is an
        open, already validated regular file (read it; do not close it)."""
        ...


@dataclass(frozen=True, slots=True)
class ExecResult:
    succeeded: bool
    exit_code: int | None = None
    signal: int | None = None
    failure: Failure | None = None
    output_truncated: bool = False
    result: Any = None
    artifacts: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    #: Entries of the output directory not collected (symlinks, FIFOs, devices, over a cap).
    refused_artifacts: list[str] = field(default_factory=list)
    #: Short remarks from the executor about this attempt (an invalid result file, a refused
    #: artifact and why, ...), for logs and the attempt record.
    notes: list[str] = field(default_factory=list)
    #: The isolation actually applied to this attempt (e.g. ``"bwrap+seccomp+cgroup-v1"``,
    #: ``"none"``) and the limits in force, each named with how it was enforced.
    isolation: str | None = None
    limits: dict[str, Any] | None = None
    #: With ``ExecRequest.output_tail_in_result``: the output not delivered to the sink, in
    #: order (``(stream, bytes)``; the omitted-bytes markers and tails included).
    log_tail: tuple[tuple[Stream, bytes], ...] = ()


class Executor(abc.ABC):
    """Turns an ``ExecRequest`` into a killed-for-sure process tree and an ``ExecResult``."""

    #: Short name reported with every attempt (e.g. ``"process"``, ``"bwrap"``).
    isolation: str = "unknown"

    def check_spec(self, spec: ExecSpec) -> str | None:
        """Why this executor would refuse ``spec`` (asked at submit), or ``None``."""
        return None

    def workspace_root(self, default: Path) -> Path:
        """Where workflow workspaces must live for this executor's runs to reach them (issue
        16): ``default`` unless the executor needs a place its sandbox user can traverse."""
        return default

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Prepare (probe capabilities, clean up what a crashed predecessor left)."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Release what ``start`` set up. Running executions must already be finished."""

    @abc.abstractmethod
    async def execute(
        self, request: ExecRequest, sink: ExecSink, cancel: asyncio.Event
    ) -> ExecResult:
        """Run to completion, timeout, or until ``cancel`` is set. Never raises for anything the
        run's process does (spawn failures become ``spawn_error``); the whole process tree is
        dead when it returns. If the awaiting asyncio task is itself cancelled, the tree is
        killed before the ``CancelledError`` propagates."""
