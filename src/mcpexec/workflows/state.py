"""A workflow run's state (issue 16), as the engine keeps it in the store's ``state`` JSON.
Pure: models and the small rules about statuses."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class WorkflowStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"  # at a manual gate, or paused
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ROLLED_BACK = "rolled_back"


TERMINAL = frozenset(
    {
        WorkflowStatus.COMPLETED,
        WorkflowStatus.FAILED,
        WorkflowStatus.CANCELLED,
        WorkflowStatus.ROLLED_BACK,
    }
)
ACTIVE = frozenset({WorkflowStatus.QUEUED, WorkflowStatus.RUNNING, WorkflowStatus.WAITING})


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"  # a gate waiting for approve
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    ROLLED_BACK = "rolled_back"


#: A step in one of these lets the steps that need it start.
SATISFIED = frozenset({StepStatus.COMPLETED, StepStatus.SKIPPED})


class StepState(BaseModel):
    status: StepStatus = StepStatus.PENDING
    run_id: str | None = None
    #: Every run this step started (retries, rollbacks), oldest first.
    runs: list[str] = Field(default_factory=list)
    started_at: str | None = None
    finished_at: str | None = None
    #: The last valid checkpoint's content, and when it was accepted.
    checkpoint: Any = None
    checkpoint_at: str | None = None
    #: When this try's valid checkpoint was first seen while its run still ran.
    detected_at: str | None = None
    #: The (mtime_ns, size) of the last checkpoint refused, so it alerts once.
    refused: list[int] | None = None
    #: ``git: true`` workspaces: the commit when the step started (rollback resets to it).
    git_base: str | None = None
    rollback_run_id: str | None = None
    error: str | None = None
    #: Set by ``mark-done``: the step's run is stopped and its checkpoint validated by hand.
    manual: bool = False


class Caller(BaseModel):
    """The principal that started the workflow run; its steps are submitted as it."""

    token_id: str
    name: str
    role: str
    tenant: str
    principal_id: str = ""


class WorkflowState(BaseModel):
    workspace: str
    branch: str | None = None
    #: ``git: true``: the branch's commit when the last step finished with nothing running (an
    #: outside commit since then pauses the run before the next step starts).
    git_head: str | None = None
    #: ``git: true``: the commit last published onto the branch in the repository (another
    #: commit there is someone else's: the run pauses).
    git_published: str | None = None
    caller: Caller
    paused: bool = False
    steps: dict[str, StepState] = Field(default_factory=dict)
    #: Agent sessions by the step's ``agent.session`` name: the provider's session id.
    sessions: dict[str, str] = Field(default_factory=dict)
    error: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
