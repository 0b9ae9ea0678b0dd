"""What an isolation backend adds to one attempt of the subprocess machinery.

:class:`mcpexec.executor.attempt.Attempt` owns the life of an attempt (spawn from the loop thread,
deadline, kill escalation, cgroup sweep, drain, collection). A backend does not copy it: it hands
the attempt an :class:`AttemptHooks` whose methods are called at fixed points. The default adds
nothing: the plain subprocess executor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcpexec.executor.redact import Redactor
from mcpexec.executor.workdir import Workdir
from mcpexec.models import Failure


@dataclass
class Spawn:
    """What to exec: argv, the executable, environment, cwd, inherited descriptors and the
    pre-exec extras (more ``cgroup.procs`` descriptors to join, a uid/gid to switch to)."""

    argv: list[str]
    executable: str
    env: dict[str, str]
    cwd: Path
    pass_fds: tuple[int, ...] = ()
    procs_fds: tuple[int, ...] = ()
    procs_paths: tuple[Path, ...] = ()  # the same files as procs_fds, by path
    drop_to: tuple[int, int] | None = None
    address_space: bool = True  # apply memory_mb as RLIMIT_AS
    nproc: int | None = None


@dataclass
class AttemptHooks:
    """The identity backend. ``isolation`` and ``limits`` are recorded with the attempt."""

    isolation: str
    limits: dict[str, Any] = field(default_factory=dict)
    redactor: Redactor | None = None
    #: The workdir as the task sees it (``None``: its host path).
    task_home: str | None = None
    task_tmp: str | None = None

    def create_workdir(self, parent: Path, leaf: str) -> Workdir:
        return Workdir.create(parent, leaf)

    def spawn(self, spawn: Spawn, workdir: Workdir, v2_leaf: Path | None) -> Spawn:
        """Called once everything is written into the workdir, right before the spawn."""
        return spawn

    def after_spawn(self) -> None:
        """Close the parent's copies of descriptors handed to the child."""

    def reclassify(self, failure: Failure | None, notes: list[str]) -> Failure | None:
        """Refine the outcome with what the backend saw (a memory-limit kill, ...)."""
        return failure

    def release_workdir(self, workdir: Workdir, keep: bool) -> None:
        if keep:
            workdir.close()
        else:
            workdir.remove()

    def close(self) -> None:
        """After the tree is dead and the workdir released."""
