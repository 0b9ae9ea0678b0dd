"""What the MCP tools return: typed models, so every tool has an output schema and answers with
``structuredContent``. Run views reuse ``mcpexec.views.run_view``, as REST does."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mcpexec.models import Artifact, Attempt, Run
from mcpexec.views import run_view


class FailureInfo(BaseModel):
    kind: str = Field(description="exit_code, signal, timeout, cancelled, output_limit, …")
    message: str


class RunInfo(BaseModel):
    """A run as the REST API shows it (``GET /api/v1/runs/{id}``)."""

    model_config = ConfigDict(extra="allow")

    id: str
    status: str = Field(description="pending, running, completed, failed or cancelled")
    kind: str = Field(description="command, shell or script")
    exit_code: int | None = None
    failure: FailureInfo | None = None
    progress: dict[str, Any] | None = None
    result: Any = None
    attempts: int
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    cancel_requested: bool = Field(
        default=False, description="a cancel was asked and the run is still stopping"
    )

    @classmethod
    def of(cls, run: Run) -> RunInfo:
        return cls._stopping(cls.model_validate(run_view(run, brief=True)), run)

    @staticmethod
    def _stopping(info: RunInfo, run: Run) -> RunInfo:
        info.cancel_requested = bool(info.cancel_requested) and not run.terminal
        return info

    @classmethod
    def detailed(cls, run: Run, last: Attempt | None) -> RunInfo:
        """With the spec and the last attempt's isolation and limits (get_run detail=true)."""
        data = run_view(run)
        if last is not None:
            data["isolation"] = last.isolation
            data["limits_applied"] = last.limits
        return cls._stopping(cls.model_validate(data), run)


class ExecuteResult(BaseModel):
    """The outcome of ``execute``: enough to act on without another call."""

    run_id: str
    status: str = Field(
        description="completed, failed, cancelled; pending/running if it outlived the wait"
    )
    exit_code: int | None = None
    failure: FailureInfo | None = None
    stdout: str = Field(description="the last bytes of stdout (UTF-8, invalid bytes replaced)")
    stderr: str = Field(description="the last bytes of stderr")
    stdout_truncated: bool = Field(description="stdout holds only the tail of the output")
    stderr_truncated: bool
    result: Any = Field(default=None, description="the run's result.json, if it wrote one")
    artifacts: list[str] = Field(description="artifact names; fetch with read_artifact")
    duration_s: float | None = None


class SubmitResult(BaseModel):
    run_id: str
    status: str
    created: bool = Field(description="false when the idempotency key matched an earlier run")


class RunList(BaseModel):
    runs: list[RunInfo]
    next_cursor: str | None = Field(default=None, description="pass as cursor for the next page")


class LogRead(BaseModel):
    run_id: str
    stream: str
    offset: int
    next_offset: int = Field(description="pass as offset to continue reading")
    data: str = Field(description="UTF-8 text (invalid bytes replaced)")
    still_writing: bool = Field(description="the run may still add output after next_offset")


class ArtifactInfo(BaseModel):
    name: str
    size: int
    sha256: str
    attempt: int
    created_at: str

    @classmethod
    def of(cls, artifact: Artifact) -> ArtifactInfo:
        return cls.model_validate(artifact.model_dump(mode="json", exclude={"run_id"}))


class ArtifactList(BaseModel):
    run_id: str
    artifacts: list[ArtifactInfo]


class ArtifactRead(BaseModel):
    run_id: str
    name: str
    size: int
    sha256: str
    mime_type: str
    text: str | None = Field(default=None, description="the content, when it is UTF-8 text")
    truncated: bool = Field(description="only the first max_bytes were returned")
