"""The domain vocabulary: run requests, runs, attempts, failures, limits, retry policies.

Pure data: these models validate input at the edge (REST, MCP, CLI all build a ``RunRequest``) and
are what the store returns. Nothing here does I/O.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict, JsonValue
from pydantic_core import PydanticCustomError

DEFAULT_TENANT = "default"
MAX_PRIORITY = 100
PRIORITY_NAMES = {"low": -10, "normal": 0, "high": 10}
# Names are checked with fullmatch: "$" alone would let a trailing newline through.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_INPUT_NAME = re.compile(r"[A-Za-z0-9._-][A-Za-z0-9._/-]{0,254}")
_LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,62}")
_PRIORITY_NUMBER = re.compile(r"-?[0-9]{1,4}")
_WORKER_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,30}[a-z0-9])?")

# The same rules in JSON Schema (ECMA-262 patterns) for the OpenAPI document, so that what the
# document calls valid is accepted and the rest refused.
ENV_NAME_PATTERN = "^(?!MCPEXEC_)[A-Za-z_][A-Za-z0-9_]{0,127}$"
INPUT_NAME_PATTERN = (
    "^(?!.*(?:^|/)[.]{1,2}(?:/|$))(?!.*//)(?!.*/$)[A-Za-z0-9._-][A-Za-z0-9._/-]{0,254}$"
)
LABEL_KEY_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$"
NO_NUL_PATTERN = "^[^\\u0000]*$"
#: A worker label (``worker_labels`` of a run, ``--labels`` of a worker): 1-32 lower-case
#: letters, digits, '.', '_', '-', starting and ending with a letter or digit.
WORKER_LABEL_PATTERN = "^[a-z0-9](?:[a-z0-9._-]{0,30}[a-z0-9])?$"
#: At most this many worker labels on a run (and on a worker).
MAX_WORKER_LABELS = 16
TASK_NAME_PATTERN = "^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$"
#: ``name`` or ``name@version``; a version is 1, 2, ... (no leading zero, so one spelling each).
TASK_REF_PATTERN = "^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?(?:@[1-9][0-9]{0,17})?$"
BASE64_PATTERN = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
#: Linux's MAX_ARG_STRLEN is 32 pages (128 KiB) per argv or environment string, its NUL included:
#: a longer one makes execve fail with "Argument list too long".
MAX_ARG_BYTES = 128 * 1024 - 1
#: Total bytes of argv plus the spec's env (each string with its NUL). ARG_MAX is 2 MiB here (a
#: quarter of the 8 MiB stack); the rest is left for the allowlisted environment and the wrapper.
MAX_EXEC_BYTES = 1024 * 1024


def _scalar_text(value: str) -> str:
    """Refuse text that is not a sequence of Unicode scalar values (a lone surrogate from a JSON
    ``\\ud800`` escape): it cannot be encoded as UTF-8, so it could be neither stored nor
    returned."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"is not valid Unicode: a lone surrogate at character {exc.start} "
            "(text must be Unicode scalar values)"
        ) from None
    return value


#: Every text field of a request is a ``Text``.
Text = Annotated[str, AfterValidator(_scalar_text)]


def _finite_numbers(value: dict[str, Any]) -> dict[str, Any]:
    """Refuse ``NaN`` and ``Infinity`` anywhere in a free-form JSON object: Python's JSON
    parsers take them (``json.loads``, YAML's ``.nan``), JSON has neither, and a value holding
    one could not be answered as JSON afterwards."""
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            name = "NaN" if math.isnan(item) else ("Infinity" if item > 0 else "-Infinity")
            raise ValueError(f"{name} is not a JSON number (JSON has no NaN or Infinity)")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return value


#: A free-form JSON object of a request (parameters, a tool's arguments): any JSON, whose
#: numbers are finite.
JsonObject = Annotated[dict[str, Any], AfterValidator(_finite_numbers)]


def _no_nul(what: str, value: str) -> None:
    if "\0" in value:
        raise ValueError(f"{what} may not contain NUL bytes")


def _arg_bytes(what: str, value: str) -> int:
    size = len(value.encode())
    if size > MAX_ARG_BYTES:
        raise ValueError(
            f"{what} is {size} bytes once UTF-8 encoded; at most {MAX_ARG_BYTES} (the kernel's "
            "limit for one argument or environment string)"
        )
    return size + 1


def aware_utc(value: datetime, what: str | None = None) -> datetime:
    """``value`` in UTC; refused when that conversion overflows (0001-01-01T00:00+01:00 is in
    year 0 in UTC). Naive values are refused when ``what`` names the field, else taken as UTC
    (query filters)."""
    if value.tzinfo is None:
        if what is not None:
            raise ValueError(f"{what} needs a time zone (e.g. 2026-01-01T12:00:00Z)")
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(
            f"{what or 'time'} {value.isoformat()} is out of range once converted to UTC"
        ) from None


#: A date-time filter (query parameters): naive means UTC; the edges of the range are refused.
def _iso_only(value: Any) -> Any:
    """pydantic also takes a number (or a numeric string) as Unix seconds; the API documents an
    ISO 8601 date-time, so that is all it accepts."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError("give an ISO 8601 date-time (e.g. 2026-01-01T12:00:00Z), not a number")
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return value
        raise ValueError("give an ISO 8601 date-time (e.g. 2026-01-01T12:00:00Z), not a number")
    return value


#: A date-time in a body or query: ISO 8601 only, as the document says (not Unix seconds).
IsoDateTime = Annotated[datetime, BeforeValidator(_iso_only)]
Timestamp = Annotated[IsoDateTime, AfterValidator(aware_utc)]


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
    #: The store (or the disk under it) failed while recording the attempt, e.g. a full disk:
    #: the attempt was stopped rather than left hanging. Retried by default, like worker_lost.
    STORE_ERROR = "store_error"
    #: A tool run's MCP server died, closed its connection or could not be reached (issue 14).
    SERVER_LOST = "server_lost"


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


def json_integer(value: object) -> object:
    """JSON's integers: 5 and 5.0 (one number in JSON), never ``true`` or ``"5"``, which
    pydantic's lax mode would take as 1 and 5 although the document calls them invalid.

    A before-validator of the model (``field_validator(..., mode="before")``) rather than part of
    the field's type: on ``int | None`` an ``Annotated`` validator makes pydantic write the bounds
    into the document as ``ge``/``le`` instead of ``minimum``/``maximum``. Floats and booleans of
    a request are ``StrictFloat`` and ``StrictBool`` (strict float takes JSON's 5 as 5.0)."""
    if isinstance(value, bool | str):
        raise PydanticCustomError("int_type", "Input should be an integer (a JSON number)")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: An integer of a request as a type, for fields that are not ``int | None`` with bounds (there
#: the bounds must come first, ``Annotated[int, Field(ge=1), BeforeValidator(json_integer)]``,
#: or the document gets ge/le: ``test_bounds_reach_the_document_as_json_schema``).
JsonInt = Annotated[int, BeforeValidator(json_integer)]


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

    _integers = field_validator("*", mode="before")(json_integer)


class Backoff(StrEnum):
    FIXED = "fixed"
    EXPONENTIAL = "exponential"


DEFAULT_RETRY_ON: frozenset[FailureKind] = frozenset(FailureKind) - NEVER_RETRIED


class RetryPolicy(BaseModel):
    """How a failed attempt turns into another attempt.

    With no ``retry`` in a request, only attempts lost with their worker or to a store failure
    are retried (up to 3 attempts in all); a policy given by the user retries every retryable
    failure kind unless ``retry_on`` narrows it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=3, ge=1, le=100)
    _integers = field_validator("max_attempts", mode="before")(json_integer)
    backoff: Backoff = Backoff.EXPONENTIAL
    delay_s: StrictFloat = Field(default=1.0, ge=0.0, le=86_400.0)
    max_delay_s: StrictFloat = Field(default=300.0, ge=0.0, le=86_400.0)
    jitter: StrictBool = True
    retry_on: frozenset[FailureKind] = Field(
        default=DEFAULT_RETRY_ON,
        json_schema_extra={"items": {"enum": [k.value for k in sorted(DEFAULT_RETRY_ON)]}},
    )

    @field_validator("retry_on")
    @classmethod
    def _no_unretryable(cls, value: frozenset[FailureKind]) -> frozenset[FailureKind]:
        bad = value & NEVER_RETRIED
        if bad:
            names = ", ".join(sorted(bad))
            raise ValueError(f"{names} can never be retried")
        return value


DEFAULT_RETRY = RetryPolicy(
    max_attempts=3, retry_on=frozenset({FailureKind.WORKER_LOST, FailureKind.STORE_ERROR})
)


class Script(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    language: Literal["python", "bash", "sh", "node"]
    source: Text = Field(max_length=1 << 20, json_schema_extra={"pattern": NO_NUL_PATTERN})

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        _no_nul("script source", value)
        return value


class InputFile(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "if": {"properties": {"base64": {"const": True}}, "required": ["base64"]},
            "then": {"properties": {"content": {"pattern": BASE64_PATTERN}}},
        },
    )

    content: Text
    base64: StrictBool = False

    def data(self) -> bytes:
        if not self.base64:
            return self.content.encode()
        try:
            return base64.b64decode(self.content, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"not valid base64: {exc}") from exc


_TOOL_SERVER = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TOOL_QUALIFIED = re.compile(r"([A-Za-z0-9_-]{1,64})\.([^\x00]+)", re.DOTALL)
TOOL_SERVER_PATTERN = "^[A-Za-z0-9_-]{1,64}$"
TOOL_QUALIFIED_PATTERN = "^[A-Za-z0-9_-]{1,64}[.][^\\u0000]+$"


class ToolCall(BaseModel):
    """A ``tool`` run: call ``name`` on the MCP server ``server`` with ``arguments`` (issue 14).
    ``{"name": "server.tool"}`` alone is the same as giving both."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "anyOf": [
                {"required": ["server"], "properties": {"server": {"type": "string"}}},
                {"properties": {"name": {"pattern": TOOL_QUALIFIED_PATTERN}}},
            ]
        },
    )

    server: Text | None = Field(
        default=None,
        description="the MCP server (as in the servers file, or fs)",
        json_schema_extra={"pattern": TOOL_SERVER_PATTERN},
    )
    name: Text = Field(
        min_length=1,
        max_length=200,
        description="the tool: its name on the server, or server.tool",
        json_schema_extra={"pattern": NO_NUL_PATTERN},
    )
    arguments: JsonObject = Field(
        default_factory=dict, description="the tool's arguments (checked against inputSchema)"
    )

    @model_validator(mode="before")
    @classmethod
    def _split(cls, data: Any) -> Any:
        """``server.tool`` in ``name`` without ``server`` → both (the first dot splits)."""
        if isinstance(data, dict) and data.get("server") is None:
            name = data.get("name")
            found = _TOOL_QUALIFIED.fullmatch(name) if isinstance(name, str) else None
            # The length limit applies to the name as sent.
            if found is not None and len(found.group(0)) <= 200:
                data = {**data, "server": found.group(1), "name": found.group(2)}
        return data

    @model_validator(mode="after")
    def _check(self) -> ToolCall:
        if "\0" in self.name:
            raise ValueError("tool name may not contain NUL bytes")
        if self.server is None:
            raise ValueError("tool: give 'server', or a name written server.tool")
        if not _TOOL_SERVER.fullmatch(self.server):
            raise ValueError("tool server must be 1-64 letters, digits, '_' or '-'")
        return self

    @property
    def qualified(self) -> str:
        return f"{self.server}.{self.name}"


#: "Exactly one of command, shell or script" in JSON Schema (the OpenAPI document); ``null``
#: counts as absent, as the validator below takes it. A run request may name a defined task
#: instead (issue 11): one of the four.
#: The kinds of work a run spec names, exactly one of which it gives.
RUN_KINDS = ("command", "shell", "script", "tool")
_KINDS = (("command", "array"), ("shell", "string"), ("script", "object"), ("tool", "object"))
_ONE_KIND: JsonDict = {
    "oneOf": [{"required": [n], "properties": {n: {"type": k}}} for n, k in _KINDS]
}


def _one_kind_or_task(schema: JsonDict) -> None:
    """The run request's rule: exactly one of the three kinds, or a ``task``. A task's run spec
    comes from its definition, so beside ``task`` every field of the spec is absent or its
    default; ``params`` go only with a task."""
    spec: JsonDict = {}
    for name, field in ExecSpec.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            default = default.model_dump(mode="json")
        # FastAPI writes the document without None values, so a null is spelled as a type.
        spec[name] = {"type": "null"} if default is None else {"const": default}
    not_task: JsonDict = {"params": {"type": "null"}, "task": {"type": "null"}}
    branches: list[JsonValue] = [
        {"required": [n], "properties": {n: {"type": k}, **not_task}} for n, k in _KINDS
    ]
    branches.append({"required": ["task"], "properties": {**spec, "task": {"type": "string"}}})
    schema["oneOf"] = branches


class ExecSpec(BaseModel):
    """What to run: exactly one of ``command``, ``shell``, ``script`` or ``tool`` (a call to a
    downstream MCP server's tool), plus its environment."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_ONE_KIND)

    command: (
        list[
            Annotated[
                str,
                Field(max_length=MAX_ARG_BYTES, json_schema_extra={"pattern": NO_NUL_PATTERN}),
                AfterValidator(_scalar_text),
            ]
        ]
        | None
    ) = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="argv, run without a shell (each argument at most 128 KiB - 1 in UTF-8, "
        "argv and env together at most 1 MiB)",
    )
    shell: Text | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ARG_BYTES,
        description="run with /bin/sh -c (at most 128 KiB - 1 in UTF-8, no NUL)",
        json_schema_extra={"pattern": NO_NUL_PATTERN},
    )
    script: Script | None = None
    tool: ToolCall | None = Field(
        default=None, description="call a tool of a configured MCP server (a durable tool run)"
    )
    env: dict[Text, Text] = Field(
        default_factory=dict,
        description="each NAME=value at most 128 KiB - 1 in UTF-8",
        json_schema_extra={
            "propertyNames": {"pattern": ENV_NAME_PATTERN},
            "additionalProperties": {"type": "string", "pattern": NO_NUL_PATTERN},
        },
    )
    inputs: dict[Text, str | InputFile] = Field(
        default_factory=dict,
        description="files written into the working directory first",
        json_schema_extra={"propertyNames": {"pattern": INPUT_NAME_PATTERN}},
    )
    timeout_s: StrictFloat | None = Field(default=None, gt=0, le=7 * 86_400)
    limits: Limits = Field(default_factory=Limits)
    network: StrictBool = Field(default=False, description="network access (sandbox default: off)")
    secrets: list[Text] = Field(
        default_factory=list,
        max_length=64,
        description="names of server-configured secrets to expose as environment variables",
        json_schema_extra={"items": {"type": "string", "pattern": ENV_NAME_PATTERN}},
    )

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> ExecSpec:
        given = [k for k in RUN_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'command' (argv list), 'shell' (string), 'script' "
                f"({{language, source}}) or 'tool' ({{server, name, arguments}}); got "
                f"{given or 'none'}"
            )
        if self.command is not None and any("\0" in a for a in self.command):
            raise ValueError("command arguments may not contain NUL bytes")
        self._exec_size()
        both = sorted(set(self.secrets) & set(self.env))
        if both:
            raise ValueError(f"{', '.join(both)}: named both in 'env' and in 'secrets'")
        return self

    def _exec_size(self) -> None:
        """argv and env together must fit what execve accepts (E2BIG would fail the run)."""
        args = self.command if self.command is not None else [self.shell or ""]
        total = sum(len(a.encode()) + 1 for a in args)
        total += sum(len(k) + len(v.encode()) + 2 for k, v in self.env.items())
        if total > MAX_EXEC_BYTES:
            raise ValueError(
                f"command/shell and env are {total} bytes together; at most {MAX_EXEC_BYTES}"
            )

    @field_validator("command")
    @classmethod
    def _command_bytes(cls, command: list[str] | None) -> list[str] | None:
        for i, arg in enumerate(command or ()):
            _arg_bytes(f"argument {i}", arg)
        return command

    @field_validator("shell")
    @classmethod
    def _shell(cls, shell: str | None) -> str | None:
        if shell is not None:
            _no_nul("shell", shell)
            _arg_bytes("shell", shell)
        return shell

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name, value in env.items():
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(f"env name {name!r} is not a valid variable name")
            if name.startswith("MCPEXEC_"):
                raise ValueError(f"env name {name!r}: MCPEXEC_* variables are set by mcpexec")
            if "\0" in value:
                raise ValueError(f"env {name!r} contains a NUL byte")
            _arg_bytes(f"env {name!r} (as NAME=value)", f"{name}={value}")
        return env

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not _ENV_NAME.fullmatch(name) or name.startswith("MCPEXEC_"):
                raise ValueError(f"secret name {name!r} is not a valid variable name")
        return list(dict.fromkeys(names))

    @field_validator("inputs")
    @classmethod
    def _input_names(cls, inputs: dict[str, str | InputFile]) -> dict[str, str | InputFile]:
        for name, value in inputs.items():
            parts = name.split("/")
            if not _INPUT_NAME.fullmatch(name) or any(p in ("", ".", "..") for p in parts):
                raise ValueError(
                    f"input name {name!r} must be a relative path of letters, digits, '._-/' "
                    "without '..' or empty parts"
                )
            if isinstance(value, InputFile):
                value.data()  # raises on invalid base64
            else:
                try:
                    _scalar_text(value)
                except ValueError as exc:
                    raise ValueError(f"input {name!r} {exc}") from None
        return inputs

    @property
    def kind(self) -> str:
        if self.command is not None:
            return "command"
        if self.tool is not None:
            return "tool"
        return "shell" if self.shell is not None else "script"

    def summary(self, width: int = 60) -> str:
        """One line a person recognises the run by."""
        if self.command is not None:
            text = " ".join(self.command)
        elif self.shell is not None:
            text = self.shell
        elif self.tool is not None:
            text = f"[tool] {self.tool.qualified} {self.tool.arguments}"
        else:
            assert self.script is not None
            text = f"[{self.script.language}] {self.script.source}"
        text = " ".join(text.split())
        return text if len(text) <= width else text[: width - 1] + "…"


def parse_priority(value: int | str) -> int:
    if isinstance(value, str):
        if value in PRIORITY_NAMES:
            return PRIORITY_NAMES[value]
        if not _PRIORITY_NUMBER.fullmatch(value):
            names = ", ".join(PRIORITY_NAMES)
            raise ValueError(f"priority must be an integer or one of {names}")
        value = int(value)
    if not -MAX_PRIORITY <= value <= MAX_PRIORITY:
        raise ValueError(f"priority must be between -{MAX_PRIORITY} and {MAX_PRIORITY}")
    return value


def check_labels_shape(labels: dict[str, str]) -> dict[str, str]:
    """At most 32 labels, keys matching ``LABEL_KEY_PATTERN``, values of at most 256 characters
    (run requests and task definitions alike)."""
    if len(labels) > 32:
        raise ValueError("at most 32 labels")
    for key, value in labels.items():
        if not _LABEL_KEY.fullmatch(key):
            raise ValueError(f"label key {key!r} must match {LABEL_KEY_PATTERN}")
        if len(value) > 256:
            raise ValueError(f"label {key!r}: value longer than 256 characters")
    return labels


def _priority_value(value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON's 5.0 is the integer 5
    # A string is a name: the document has no numeric strings, and "5" taken as 5 would accept a
    # request the document calls invalid (the CLI reads its own "5" with ``parse_priority``).
    if isinstance(value, str) and value not in PRIORITY_NAMES:
        raise ValueError(f"priority must be an integer or one of {', '.join(PRIORITY_NAMES)}")
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("priority must be an integer or low/normal/high")
    return parse_priority(value)


#: A run's or task's priority: -100..100 or a name (``parse_priority``), as the document says.
Priority = Annotated[
    int,
    BeforeValidator(_priority_value),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": -MAX_PRIORITY, "maximum": MAX_PRIORITY},
                {"enum": list(PRIORITY_NAMES)},
            ],
            "description": "higher runs first: -100..100, or low / normal / high",
        }
    ),
]


def check_worker_labels(labels: Any) -> list[str]:
    """Worker labels as stored: each matching ``WORKER_LABEL_PATTERN``, at most
    ``MAX_WORKER_LABELS`` distinct ones, sorted and without repeats (a run asking ``gpu`` twice
    asks for ``gpu``). Raises ``ValueError`` naming the bad label."""
    if not isinstance(labels, list | tuple | set | frozenset):
        raise ValueError("worker_labels must be a list of strings")
    if len(labels) > MAX_WORKER_LABELS:
        raise ValueError(f"at most {MAX_WORKER_LABELS} worker labels")
    for label in labels:
        if not isinstance(label, str) or not _WORKER_LABEL.fullmatch(label):
            raise ValueError(
                f"worker label {label!r}: 1-32 lower-case letters, digits, '.', '_' or '-', "
                "starting and ending with a letter or digit"
            )
    return sorted(set(labels))


#: The labels a run asks its worker to have (every one of them); ``[]``: any worker.
WorkerLabels = Annotated[
    list[str],
    BeforeValidator(check_worker_labels),
    WithJsonSchema(
        {
            "type": "array",
            "items": {"type": "string", "pattern": WORKER_LABEL_PATTERN},
            "maxItems": MAX_WORKER_LABELS,
            "description": "only a worker having every one of these labels runs it "
            "(mcpexec worker --labels); none: any worker",
        }
    ),
]


#: Labels as the document has them (``check_labels_shape`` checks them).
Labels = Annotated[
    dict[Text, Text],
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {"pattern": LABEL_KEY_PATTERN},
            "maxProperties": 32,
            "additionalProperties": {"type": "string", "maxLength": 256},
        }
    ),
]


NotifyStatus = Literal["completed", "failed", "cancelled"]
#: A webhook URL as the document says it (the target itself is checked at submit: webhooks.py).
WEBHOOK_URL_PATTERN = "^[Hh][Tt][Tt][Pp][Ss]?://[!-~]+$"
NOTIFY_STATUSES = ("completed", "failed", "cancelled")


class Notify(BaseModel):
    """Where a run's end is announced (issue 17): a signed POST to ``webhook`` when the run
    reaches one of the ``on`` statuses, delivered by the engine with retries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook: str = Field(
        min_length=8,
        max_length=2000,
        pattern=WEBHOOK_URL_PATTERN,
        description="http(s) URL the notification is POSTed to (printable ASCII)",
    )
    on: list[NotifyStatus] = Field(
        default_factory=lambda: list[NotifyStatus](["completed", "failed"]),
        min_length=1,
        max_length=3,
        description="the final statuses that notify",
    )

    @field_validator("on")
    @classmethod
    def _unique(cls, value: list[NotifyStatus]) -> list[NotifyStatus]:
        return sorted(set(value), key=NOTIFY_STATUSES.index)


class RunRequest(ExecSpec):
    """A submission: what to execute (or which task to run) plus how to queue it."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_one_kind_or_task)

    priority: Priority = 0
    run_at: IsoDateTime | None = Field(default=None, description="do not start before (ISO 8601)")
    retry: RetryPolicy | None = None
    labels: Labels = Field(default_factory=dict)
    worker_labels: WorkerLabels = Field(default_factory=list)
    idempotency_key: Text | None = Field(default=None, min_length=1, max_length=200)
    # A run of a defined task (issue 11): ``task`` instead of command/shell/script.
    task: Text | None = Field(
        default=None,
        min_length=1,
        max_length=80,
        pattern=TASK_REF_PATTERN,
        description="NAME or NAME@VERSION",
        # pydantic leaves a constraint on an Annotated type with a validator out of the schema;
        # at the top of the anyOf it still applies to the string branch only.
        json_schema_extra={"pattern": TASK_REF_PATTERN},
    )
    params: JsonObject | None = Field(default=None, description="the task's parameters")
    notify: Notify | None = Field(default=None, description="a webhook told when the run ends")

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> RunRequest:  # replaces ExecSpec's rule: a task needs none
        if self.task is None:
            if self.params is not None:
                raise ValueError("'params' are given with 'task' (a defined task's name)")
            ExecSpec._exactly_one_kind(self)  # type: ignore[operator]  # the plain function at runtime
            return self
        given = [k for k in RUN_KINDS if getattr(self, k) is not None]
        if given:
            raise ValueError(f"give either 'task' or one of {given}, not both")
        return self

    @field_validator("run_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return None if value is None else aware_utc(value, "run_at")

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: dict[str, str]) -> dict[str, str]:
        return check_labels_shape(labels)

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
    # Runs of a defined task (issue 11): which version, with which validated parameters, and
    # the median duration of the task's recent successful runs when it was submitted.
    task: str | None = None
    task_version: int | None = None
    params: dict[str, Any] | None = None
    estimated_duration_ms: int | None = None
    #: The principal that submitted the run (issue 10); ``None`` for runs stored before.
    owner: str | None = None
    #: Only a worker with every one of these labels claims the run (issue 13); ``[]``: any.
    worker_labels: list[str] = Field(default_factory=list)
    #: The webhook told when the run ends (issue 17).
    notify: Notify | None = None

    @property
    def terminal(self) -> bool:
        return self.status.terminal

    def same_request(
        self,
        spec: ExecSpec,
        retry: RetryPolicy,
        priority: int,
        labels: dict[str, str],
        run_at: datetime | None,
        worker_labels: list[str] | tuple[str, ...] = (),
    ) -> bool:
        """Whether a submit with these values asks for this run (an idempotent retry) rather
        than for a different one under the same idempotency key. Compared as validated values,
        so spelling (key order, ``"high"`` for 10, a default written out) does not matter."""
        return (
            self.spec == spec
            and self.retry == retry
            and self.priority == priority
            and _lasting(self.labels) == _lasting(labels)
            and self.run_at == run_at
            and self.worker_labels == list(worker_labels)
        )


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
    task: str | None = None
    #: Only the runs of this principal (a submitter sees its own runs).
    owner: str | None = None
    #: ``server.tool``: only tool runs of that tool (seed 003's filter, issue 14).
    tool: str | None = None
    #: Only the runs of these ids (the bulk status read, issue 12); ``None``: any.
    ids: frozenset[str] | None = None


#: The most runs one batch submit holds (``POST /api/v1/runs:batch``, issue 12).
MAX_BATCH = 1000


class BatchRequest(BaseModel):
    """The body of ``POST /api/v1/runs:batch``: each of ``runs`` is the body of a single
    ``POST /api/v1/runs`` (schema ``RunRequest``), validated on its own, so that one bad item
    is reported with its index and costs the others nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    runs: list[dict[str, Any]] = Field(
        description=f"at most {MAX_BATCH} run requests, each as the body of POST /api/v1/runs",
        json_schema_extra={
            "maxItems": MAX_BATCH,
            "items": {
                "type": "object",
                "description": "a RunRequest (#/components/schemas/RunRequest), checked alone",
            },
        },
    )
    #: Store nothing unless every item is accepted (409 ``batch_refused`` otherwise).
    all_or_nothing: StrictBool = False


class Page(BaseModel):
    """One page of runs, newest first; ``next_cursor`` fetches the next page."""

    runs: list[Run]
    next_cursor: str | None = None


#: mcpexec's label of a run's trace context (``tracing.py``): each submit's own, so two submits
#: of one request differ in it.
TRACE_LABEL = "mcp/trace"


def _lasting(labels: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if k != TRACE_LABEL}
