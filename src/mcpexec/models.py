"""The domain vocabulary: run requests, runs, attempts, failures, limits, retry policies.

Pure data: these models validate input at the edge (REST, MCP, CLI all build a ``RunRequest``) and
are what the store returns. Nothing here does I/O.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_TENANT = "default"
MAX_PRIORITY = 100
PRIORITY_NAMES = {"low": -10, "normal": 0, "high": 10}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_INPUT_NAME = re.compile(r"^[A-Za-z0-9._-][A-Za-z0-9._/-]{0,254}$")
_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$")


def utcnow() -> datetime:
    return datetime.now(UTC)


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


class FailureKind(StrEnum):
    EXIT_CODE = "exit_code"
    SIGNAL = "signal"
    TIMEOUT = "timeout"
    CPU_LIMIT = "cpu_limit"
    MEMORY_LIMIT = "memory_limit"
    OUTPUT_LIMIT = "output_limit"
    CANCELLED = "cancelled"
    WORKER_LOST = "worker_lost"
    SPAWN_ERROR = "spawn_error"
    TOOL_ERROR = "tool_error"
    VALIDATION = "validation"
    QUOTA = "quota"


#: Failure kinds that no retry policy may retry: retrying them cannot change the outcome or
#: would override a person's decision.
NEVER_RETRIED = frozenset({FailureKind.CANCELLED, FailureKind.VALIDATION, FailureKind.QUOTA})


class Stream(StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"


class Failure(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: FailureKind
    message: str


class Progress(BaseModel):
    model_config = ConfigDict(frozen=True)

    value: float | None = Field(default=None, ge=0.0, le=1.0)
    message: str | None = Field(default=None, max_length=1000)


class Limits(BaseModel):
    """Per-run resource limits. ``None`` means the server's default applies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu_s: int | None = Field(default=None, ge=1, le=86_400, description="CPU seconds (RLIMIT_CPU)")
    memory_mb: int | None = Field(
        default=None,
        ge=16,
        le=1_048_576,
        description="memory, MiB: the cgroup memory limit under the sandbox (workdir files count), "
        "else an address-space cap (RLIMIT_AS)",
    )
    pids: int | None = Field(
        default=None, ge=8, le=1_000_000, description="processes and threads (cgroup pids.max)"
    )
    disk_mb: int | None = Field(
        default=None, ge=1, le=1_048_576, description="total workdir size, MiB (sandbox)"
    )
    file_size_mb: int | None = Field(
        default=None, ge=1, le=1_048_576, description="largest file a task may write, MiB"
    )
    open_files: int | None = Field(default=None, ge=16, le=65_536, description="RLIMIT_NOFILE")
    max_output_bytes: int | None = Field(
        default=None, ge=1024, le=1 << 34, description="per stream; beyond it the tail is kept"
    )


class Backoff(StrEnum):
    FIXED = "fixed"
    EXPONENTIAL = "exponential"


DEFAULT_RETRY_ON: frozenset[FailureKind] = frozenset(FailureKind) - NEVER_RETRIED


class RetryPolicy(BaseModel):
    """How a failed attempt turns into another attempt.

    With no ``retry`` in a request, only attempts lost with their worker are retried (up to 3
    attempts in all); a policy given by the user retries every retryable failure kind unless
    ``retry_on`` narrows it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=3, ge=1, le=100)
    backoff: Backoff = Backoff.EXPONENTIAL
    delay_s: float = Field(default=1.0, ge=0.0, le=86_400.0)
    max_delay_s: float = Field(default=300.0, ge=0.0, le=86_400.0)
    jitter: bool = True
    retry_on: frozenset[FailureKind] = DEFAULT_RETRY_ON

    @field_validator("retry_on")
    @classmethod
    def _no_unretryable(cls, value: frozenset[FailureKind]) -> frozenset[FailureKind]:
        bad = value & NEVER_RETRIED
        if bad:
            names = ", ".join(sorted(bad))
            raise ValueError(f"{names} can never be retried")
        return value


DEFAULT_RETRY = RetryPolicy(max_attempts=3, retry_on=frozenset({FailureKind.WORKER_LOST}))


class Script(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    language: Literal["python", "bash", "sh", "node"]
    source: str = Field(max_length=1 << 20)


class InputFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    content: str
    base64: bool = False

    def data(self) -> bytes:
        if not self.base64:
            return self.content.encode()
        try:
            return base64.b64decode(self.content, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"not valid base64: {exc}") from exc


class ExecSpec(BaseModel):
    """What to run: exactly one of ``command``, ``shell`` or ``script``, plus its environment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: list[Annotated[str, Field(max_length=65_536)]] | None = Field(
        default=None, min_length=1, max_length=4096, description="argv, run without a shell"
    )
    shell: str | None = Field(default=None, min_length=1, max_length=1 << 20)
    script: Script | None = None
    env: dict[str, str] = Field(default_factory=dict)
    inputs: dict[str, str | InputFile] = Field(
        default_factory=dict, description="files written into the working directory first"
    )
    timeout_s: float | None = Field(default=None, gt=0, le=7 * 86_400)
    limits: Limits = Field(default_factory=Limits)
    network: bool = Field(default=False, description="network access (sandbox default: off)")
    secrets: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="names of server-configured secrets to expose as environment variables",
    )

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> ExecSpec:
        given = [k for k in ("command", "shell", "script") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'command' (argv list), 'shell' (string) or 'script' "
                f"({{language, source}}); got {given or 'none'}"
            )
        if self.command is not None and any("\0" in a for a in self.command):
            raise ValueError("command arguments may not contain NUL bytes")
        both = sorted(set(self.secrets) & set(self.env))
        if both:
            raise ValueError(f"{', '.join(both)}: named both in 'env' and in 'secrets'")
        return self

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name, value in env.items():
            if not _ENV_NAME.match(name):
                raise ValueError(f"env name {name!r} is not a valid variable name")
            if name.startswith("MCPEXEC_"):
                raise ValueError(f"env name {name!r}: MCPEXEC_* variables are set by mcpexec")
            if "\0" in value:
                raise ValueError(f"env {name!r} contains a NUL byte")
        return env

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not _ENV_NAME.match(name) or name.startswith("MCPEXEC_"):
                raise ValueError(f"secret name {name!r} is not a valid variable name")
        return list(dict.fromkeys(names))

    @field_validator("inputs")
    @classmethod
    def _input_names(cls, inputs: dict[str, str | InputFile]) -> dict[str, str | InputFile]:
        for name, value in inputs.items():
            parts = name.split("/")
            if not _INPUT_NAME.match(name) or any(p in ("", ".", "..") for p in parts):
                raise ValueError(
                    f"input name {name!r} must be a relative path of letters, digits, '._-/' "
                    "without '..' or empty parts"
                )
            if isinstance(value, InputFile):
                value.data()  # raises on invalid base64
        return inputs

    @property
    def kind(self) -> str:
        if self.command is not None:
            return "command"
        return "shell" if self.shell is not None else "script"

    def summary(self, width: int = 60) -> str:
        """One line a person recognises the run by."""
        if self.command is not None:
            text = " ".join(self.command)
        elif self.shell is not None:
            text = self.shell
        else:
            assert self.script is not None
            text = f"[{self.script.language}] {self.script.source}"
        text = " ".join(text.split())
        return text if len(text) <= width else text[: width - 1] + "…"


def parse_priority(value: int | str) -> int:
    if isinstance(value, str):
        if value in PRIORITY_NAMES:
            return PRIORITY_NAMES[value]
        try:
            value = int(value)
        except ValueError:
            names = ", ".join(PRIORITY_NAMES)
            raise ValueError(f"priority must be an integer or one of {names}") from None
    if not -MAX_PRIORITY <= value <= MAX_PRIORITY:
        raise ValueError(f"priority must be between -{MAX_PRIORITY} and {MAX_PRIORITY}")
    return value


class RunRequest(ExecSpec):
    """A submission: what to execute plus how to queue it."""

    priority: int = 0
    run_at: datetime | None = Field(default=None, description="do not start before (ISO 8601)")
    retry: RetryPolicy | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError("priority must be an integer or low/normal/high")
        return parse_priority(value)

    @field_validator("run_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("run_at needs a time zone (e.g. 2026-01-01T12:00:00Z)")
        return value.astimezone(UTC) if value is not None else None

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: dict[str, str]) -> dict[str, str]:
        if len(labels) > 32:
            raise ValueError("at most 32 labels")
        for key, value in labels.items():
            if not _LABEL_KEY.match(key):
                raise ValueError(f"label key {key!r} must match {_LABEL_KEY.pattern}")
            if len(value) > 256:
                raise ValueError(f"label {key!r}: value longer than 256 characters")
        return labels

    def exec_spec(self) -> ExecSpec:
        return ExecSpec.model_validate(self.model_dump(include=set(ExecSpec.model_fields)))


class Attempt(BaseModel):
    model_config = ConfigDict(frozen=True)

    run_id: str
    number: int
    worker_id: str
    status: RunStatus
    started_at: datetime
    finished_at: datetime | None = None
    exit_code: int | None = None
    signal: int | None = None
    failure: Failure | None = None
    output_truncated: bool = False
    #: The isolation applied (``"bwrap+seccomp+cgroup"``, ``"none"``, ...) and the limits in
    #: force; ``None`` while running and for attempts recorded before they were kept.
    isolation: str | None = None
    limits: dict[str, Any] | None = None

    @property
    def duration_s(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class Run(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    seq: int
    tenant: str
    status: RunStatus
    spec: ExecSpec
    retry: RetryPolicy
    priority: int
    labels: dict[str, str]
    idempotency_key: str | None = None
    created_at: datetime
    run_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    next_attempt_at: datetime | None = None
    attempts: int = 0
    worker_id: str | None = None
    cancel_requested: bool = False
    exit_code: int | None = None
    failure: Failure | None = None
    progress: Progress | None = None
    result: Any = None
    partial: bool = False
    output_truncated: bool = False
    rerun_of: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status.terminal


class Artifact(BaseModel):
    model_config = ConfigDict(frozen=True)

    run_id: str
    name: str
    size: int
    sha256: str
    attempt: int
    created_at: datetime


class LogChunk(BaseModel):
    model_config = ConfigDict(frozen=True)

    stream: Stream
    offset: int
    data: bytes


class RunFilter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant: str | None = None
    status: frozenset[RunStatus] = frozenset()
    labels: dict[str, str] = Field(default_factory=dict)
    created_after: datetime | None = None
    created_before: datetime | None = None


class Page(BaseModel):
    """One page of runs, newest first; ``next_cursor`` fetches the next page."""

    runs: list[Run]
    next_cursor: str | None = None
