"""What the executor hands one attempt: the frozen :class:`AttemptContext`, and the
:class:`AttemptHooks` an isolation backend adds to it.

:class:`~mcpexec.executor.supervisor.AttemptSupervisor` owns the life of an attempt (spawn from the
loop thread, deadline, kill escalation, tree sweep, drain, collection). Data flows one way: the
executor builds the context (request, hooks, environment, paths, tree mechanism) and the supervisor
only reads it. A backend does not copy the supervisor: its hooks are called at fixed points. The
default adds nothing: the plain subprocess executor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcpexec.executor.base import ExecRequest
from mcpexec.executor.cgroup import CgroupJoin, V2Leaf
from mcpexec.executor.cleanup import Cleanup
from mcpexec.executor.command import RunEnvironment
from mcpexec.executor.process_tree import TreeMechanism
from mcpexec.executor.redact import Redactor
from mcpexec.executor.spawner import Spawner
from mcpexec.executor.workdir import Workdir
from mcpexec.models import Failure


@dataclass
class Spawn:
    """What to exec: argv, the executable, environment, cwd, inherited descriptors and the
    pre-exec extras (more cgroups to join, a uid/gid to switch to)."""

    argv: list[str]
    executable: str
    env: dict[str, str]
    cwd: Path
    pass_fds: tuple[int, ...] = ()
    join: CgroupJoin = field(default_factory=CgroupJoin)  # besides the tree's own leaf
    drop_to: tuple[int, int] | None = None
    address_space: bool = True  # apply memory_mb as RLIMIT_AS
    nproc: int | None = None


@dataclass
class AttemptHooks:
    """The identity backend. ``isolation`` and ``limits`` are recorded with the attempt."""

    isolation: str
    limits: dict[str, Any] = field(default_factory=dict)
    redactor: Redactor | None = None
    #: The workdir as the run's process sees it (``None``: its host path), and its TMPDIR.
    run_home: str | None = None
    run_tmp: str | None = None

    def create_workdir(self, parent: Path, leaf: str) -> Workdir:
        return Workdir.create(parent, leaf)

    def spawn(self, spawn: Spawn, workdir: Workdir, v2_leaf: V2Leaf | None) -> Spawn:
        """Called once everything is written into the workdir, right before the spawn."""
        return spawn

    def after_spawn(self) -> None:
        """Close the parent's copies of descriptors handed to the child."""

    def spared_by_sigterm(self, pid: int) -> tuple[int, ...]:
        """Processes of the tree the grace SIGTERM must not reach (``pid``: the spawned one)."""
        return ()

    def returncode(self, observed: int | None) -> int | None:
        """How the run's command really ended (``-N`` for signal N), given the spawned
        process's own return code (a sandbox may know better than its wrapper's status)."""
        return observed

    def reclassify(self, failure: Failure | None, notes: list[str]) -> Failure | None:
        """Refine the outcome with what the backend saw (a memory-limit kill, ...)."""
        return failure

    def release_workdir(self, workdir: Workdir, keep: bool) -> None:
        if keep:
            workdir.close()
        else:
            workdir.remove()

    def close(self) -> None:
        """After the tree is dead, before the workdir is released (in the cleanup thread)."""


@dataclass(frozen=True)
class AttemptContext:
    """Everything one attempt needs, built by the executor before it starts."""

    request: ExecRequest
    hooks: AttemptHooks
    environment: RunEnvironment
    mechanism: TreeMechanism
    instance_dir: Path  # the attempt's workdir is created in here
    keep_workdirs: bool = False
    #: Where the attempt's remains (workdir, cgroup leaf, the hooks' resources) are removed
    #: once its tree is dead: off the event loop. ``None``: inline, before ``run`` returns.
    cleanup: Cleanup | None = None
    #: The spawn helper, when the executor runs one (else the exec wrapper spawns).
    spawner: Spawner | None = None
