"""Workflow definitions (issue 16): the model, YAML/JSON reading with errors naming the line and
field, the DAG check, and the content hash that versions them. Pure: no I/O.

A workflow is a named, versioned DAG of steps::

    name: teamops
    params:
      type: object
      properties: {feature: {type: string, pattern: "^[a-z0-9-]{3,20}$"}}
      required: [feature]
    workspace: {git: true, repo: /srv/project}
    concurrency: 2
    steps:
      init: {shell: './tools/init.sh "$MCPEXEC_PARAM_FEATURE"'}
      orchestrator:
        needs: [init]
        agent: {provider: claude_code, instructions: instructions/orchestrator.md}
        checkpoint: {file: checkpoints/orchestrator.json, schema: {type: object}, timeout_s: 1800}
        rollback: {git: reset, preserve: ["TASK_SPEC.md"]}
      review: {needs: [orchestrator], gate: manual}

Each step is exactly one of a run spec (``command``, ``shell``, ``script``, ``tool``), a
``task`` reference, an ``agent`` or ``gate: manual``. Parameters reach every step as data
(``MCPEXEC_PARAM_*`` and ``params.json``), never spliced into its text.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any, Literal, Self

from jsonschema import Draft202012Validator, SchemaError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    ValidationError,
    field_validator,
    model_validator,
)

from mcpexec.errors import InvalidRequest
from mcpexec.models import (
    TASK_NAME_PATTERN,
    TASK_REF_PATTERN,
    ExecSpec,
    JsonInt,
    JsonObject,
    Limits,
    RetryPolicy,
    Script,
    Text,
    ToolCall,
)
from mcpexec.params import check_params_schema
from mcpexec.task_files import (
    MAX_DEFINITION_BYTES,
    Format,
    _field_error,
    _line,
    _load_json,
    _load_yaml,
    detect_format,
)
from mcpexec.tasks import TASK_NAME

STEP_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
MAX_STEPS = 100
#: What a step may run: exactly one of these.
STEP_KINDS = ("command", "shell", "script", "tool", "task", "agent", "gate")
RUN_STEP_KINDS = ("command", "shell", "script", "tool")
#: A checkpoint file's default size cap.
CHECKPOINT_MAX_BYTES = 1024 * 1024
REL_PATH_PATTERN = r"^(?!/)(?!.*//)(?!.*(?:^|/)\.\.(?:/|$))[A-Za-z0-9._/-]{1,255}$"
_REL_PATH = re.compile(REL_PATH_PATTERN.removeprefix("^").removesuffix("$"))
STEP_NAME_PATTERN = "^[a-z][a-z0-9_-]{0,63}$"
#: An MCP tool name a workflow or step exposes (``mcp_tool``): what models read in tools/list.
TOOL_NAME_PATTERN = "^[a-z][a-z0-9_]{0,63}$"


def _relative(value: str, what: str) -> str:
    if not _REL_PATH.fullmatch(value) or "//" in value:
        raise ValueError(
            f"{what} {value!r}: a relative path inside the workspace (letters, digits, "
            "'.', '_', '-', '/'; no '..', not absolute)"
        )
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CheckpointSpec(_Strict):
    """The file a step leaves when it is done; validated before the workflow moves on."""

    file: str = Field(
        description="path relative to the workspace",
        max_length=255,
        json_schema_extra={"pattern": REL_PATH_PATTERN},
    )
    schema_: dict[str, Any] = Field(
        default_factory=dict, alias="schema", description="JSON Schema of its content"
    )
    timeout_s: Annotated[StrictFloat, Field(gt=0, le=7 * 86_400)] | None = None
    max_bytes: JsonInt = Field(
        default=CHECKPOINT_MAX_BYTES,
        ge=2,
        le=16 * 1024 * 1024,
        json_schema_extra={"minimum": 2, "maximum": 16 * 1024 * 1024},
    )

    @field_validator("file")
    @classmethod
    def _file(cls, value: str) -> str:
        return _relative(value, "checkpoint file")

    @field_validator("schema_")
    @classmethod
    def _schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            Draft202012Validator.check_schema(value)
        except SchemaError as exc:
            raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
        if len(json.dumps(value)) > 64 * 1024:
            raise ValueError("schema larger than 64 KiB")
        return value


class AgentSpec(_Strict):
    """An AI coding agent started from its CLI by a provider (``claude_code``, ``command``)."""

    provider: str = Field(default="claude_code", pattern=r"^[a-z][a-z0-9_]{0,63}$")
    instructions: str | None = Field(
        default=None,
        description="role file in the workspace",
        max_length=255,
        json_schema_extra={"pattern": REL_PATH_PATTERN},
    )
    prompt: Text | None = Field(default=None, max_length=64 * 1024)
    #: Steps naming the same session continue one agent session (``--resume``).
    session: str = Field(default="main", pattern=r"^[a-z][a-z0-9_-]{0,63}$")
    #: The agent CLI (``claude`` by default for ``claude_code``).
    executable: Text | None = Field(default=None, max_length=4096)
    #: ``command`` provider: argv; ``{prompt_file}``, ``{session}``, ``{workspace}`` are
    #: replaced by the engine's own values (never by parameters).
    argv: list[Text] | None = Field(default=None, max_length=256)
    args: list[Text] = Field(default_factory=list, max_length=256)

    @field_validator("instructions")
    @classmethod
    def _instructions(cls, value: str | None) -> str | None:
        return None if value is None else _relative(value, "instructions")


class GitRollback(_Strict):
    git: Literal["reset"]
    preserve: list[str] = Field(default_factory=list, max_length=100)


class RunStep(_Strict):
    """A run spec (a rollback's, or the body of a step)."""

    command: list[Text] | None = Field(default=None, min_length=1, max_length=4096)
    shell: Text | None = Field(default=None, max_length=128 * 1024)
    script: Script | None = None
    tool: ToolCall | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        kinds = STEP_KINDS if isinstance(self, StepSpec) else RUN_STEP_KINDS
        given = [k for k in kinds if getattr(self, k, None) is not None]
        if len(given) != 1:
            names = ", ".join(repr(k) for k in kinds)
            raise ValueError(f"give exactly one of {names}; got {given or 'none'}")
        if given[0] in RUN_STEP_KINDS:
            try:
                self.exec_spec()
            except ValidationError as exc:
                message = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
                raise ValueError(message) from None
        return self

    def exec_spec(self) -> ExecSpec:
        """The run spec of this step (its kind, env, timeout, limits, network)."""
        fields = {k: getattr(self, k) for k in RUN_STEP_KINDS if getattr(self, k) is not None}
        for extra in ("env", "timeout_s", "limits", "network"):
            if hasattr(self, extra):
                fields[extra] = getattr(self, extra)
        return ExecSpec.model_validate(fields)


class StepSpec(RunStep):
    needs: list[str] = Field(
        default_factory=list,
        max_length=MAX_STEPS,
        json_schema_extra={"items": {"type": "string", "pattern": STEP_NAME_PATTERN}},
    )
    task: str | None = Field(default=None, pattern=TASK_REF_PATTERN)
    agent: AgentSpec | None = None
    gate: Literal["manual"] | None = None
    env: dict[Text, Text] = Field(default_factory=dict)
    timeout_s: Annotated[StrictFloat, Field(gt=0, le=7 * 86_400)] | None = None
    retry: RetryPolicy | None = None
    limits: Limits = Field(default_factory=Limits)
    network: bool = False
    checkpoint: CheckpointSpec | None = None
    rollback: GitRollback | RunStep | None = None
    mcp_tool: str | None = Field(default=None, pattern=TOOL_NAME_PATTERN)
    description: str = Field(default="", max_length=4096)

    @property
    def kind(self) -> str:
        return next(k for k in STEP_KINDS if getattr(self, k) is not None)

    @field_validator("rollback", mode="before")
    @classmethod
    def _rollback(cls, value: Any) -> Any:
        """One of the two shapes, with the error of the one meant (``git:`` or a run spec)."""
        if not isinstance(value, dict):
            return value
        model: type[BaseModel] = GitRollback if "git" in value else RunStep
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            message = str(first["msg"]).removeprefix("Value error, ")
            raise ValueError(f"{where}: {message}" if where else message) from None


class WorkspaceSpec(_Strict):
    #: A clone of ``repo`` on its own branch ``workflow/<run id>``, published into ``repo``.
    git: bool = False
    #: The repository (git) or a directory to copy nothing from: an absolute path on the server.
    repo: str | None = Field(default=None, max_length=4096)


class WorkflowDefinition(_Strict):
    name: str = Field(max_length=64, pattern=TASK_NAME_PATTERN)
    description: str = Field(default="", max_length=4096)
    params: JsonObject = Field(default_factory=dict)
    workspace: WorkspaceSpec = Field(default_factory=WorkspaceSpec)
    concurrency: (
        Annotated[JsonInt, Field(ge=1, le=1000, json_schema_extra={"minimum": 1, "maximum": 1000})]
        | None
    ) = None
    on_failure: Literal["fail", "rollback"] = "fail"
    #: Exposed as an MCP tool of this name: it starts a run and answers when the run ends or
    #: waits (a gate, a pause). A step's ``mcp_tool`` answers when that step is done.
    mcp_tool: str | None = Field(default=None, pattern=TOOL_NAME_PATTERN)
    steps: dict[str, StepSpec] = Field(
        min_length=1,
        max_length=MAX_STEPS,
        json_schema_extra={"propertyNames": {"pattern": STEP_NAME_PATTERN}},
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not TASK_NAME.fullmatch(value):
            raise ValueError(
                f"workflow name {value!r}: 1-64 lower-case letters, digits, '.', '_' or '-'"
            )
        return value

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_params_schema(value)

    @field_validator("steps")
    @classmethod
    def _step_names(cls, steps: dict[str, StepSpec]) -> dict[str, StepSpec]:
        for name in steps:
            if not STEP_NAME.fullmatch(name):
                raise ValueError(
                    f"step name {name!r}: a lower-case letter, then up to 63 letters, digits, "
                    "'_' or '-'"
                )
        return steps

    def exposed_tools(self) -> list[tuple[str, str | None]]:
        """The MCP tools this workflow exposes: ``(tool name, step)``, ``None`` for the whole
        workflow's."""
        found: list[tuple[str, str | None]] = []
        if self.mcp_tool is not None:
            found.append((self.mcp_tool, None))
        found.extend((s.mcp_tool, n) for n, s in self.steps.items() if s.mcp_tool is not None)
        return found

    def order(self) -> list[str]:
        """The steps in a topological order (ties by definition order)."""
        done: list[str] = []
        remaining = dict(self.steps)
        while remaining:
            ready = [n for n, s in remaining.items() if all(d in done for d in s.needs)]
            done.extend(ready)
            for name in ready:
                del remaining[name]
        return done


def dag_problem(definition: WorkflowDefinition) -> tuple[tuple[str, ...], str] | None:
    """The first problem of the ``needs`` graph: ``(field location, message)``, or ``None``."""
    steps = definition.steps
    for name, step in steps.items():
        for dep in step.needs:
            if dep == name:
                return ("steps", name, "needs"), f"step {name!r} needs itself"
            if dep not in steps:
                known = ", ".join(steps)
                return (
                    ("steps", name, "needs"),
                    f"step {name!r} needs unknown step {dep!r} (steps: {known})",
                )
        if len(set(step.needs)) != len(step.needs):
            return ("steps", name, "needs"), f"step {name!r} names a step twice in needs"
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(name: str, path: list[str]) -> list[str] | None:
        state[name] = 1
        for dep in steps[name].needs:
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep] if dep in path else [name, dep]
            if state.get(dep) is None:
                found = visit(dep, [*path, dep])
                if found:
                    return found
        state[name] = 2
        return None

    for name in steps:
        if state.get(name) is None:
            cycle = visit(name, [name])
            if cycle:
                return ("steps", cycle[0], "needs"), "the steps form a cycle: " + " -> ".join(
                    reversed(cycle)
                )
    return None


def tool_problem(definition: WorkflowDefinition) -> tuple[tuple[str, ...], str] | None:
    """An MCP tool name given twice in one definition: ``(field location, message)``."""
    seen: dict[str, str | None] = {}
    for tool, step in definition.exposed_tools():
        if tool in seen:
            first = "the workflow" if seen[tool] is None else f"step {seen[tool]!r}"
            loc = ("mcp_tool",) if step is None else ("steps", step, "mcp_tool")
            return loc, f"MCP tool {tool!r} is already exposed by {first}"
        seen[tool] = step
    return None


def parse_workflow(
    text: str, *, fmt: Format | None = None, source: str = "definition"
) -> WorkflowDefinition:
    """Parse and validate a workflow definition; ``InvalidRequest`` names source, line, field."""
    if len(text.encode()) > MAX_DEFINITION_BYTES:
        raise InvalidRequest(f"{source}: larger than {MAX_DEFINITION_BYTES // (1024 * 1024)} MiB")
    fmt = fmt or detect_format(text, source)
    data = _load_json(text, source) if fmt == "json" else _load_yaml(text, source)
    if not isinstance(data, dict):
        raise InvalidRequest(f"{source}: a workflow definition is a mapping of fields", line=1)
    if "name" not in data:
        raise InvalidRequest(f"{source}: field 'name': missing", field="name")
    try:
        definition = WorkflowDefinition.model_validate(data)
    except ValidationError as exc:
        raise _field_error(exc, text, source) from None
    problem = dag_problem(definition) or tool_problem(definition)
    if problem is not None:
        loc, message = problem
        line = _line(text, loc)
        where = f"{source}:{line}" if line else source
        field = ".".join(loc)
        raise InvalidRequest(f"{where}: field {field!r}: {message}", field=field, line=line)
    return definition


def canonical(definition: WorkflowDefinition) -> dict[str, Any]:
    """The stored form: JSON, defaults left out."""
    data: dict[str, Any] = definition.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    data["name"] = definition.name
    data["steps"] = {
        name: step.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        for name, step in definition.steps.items()
    }
    return data


def content_hash(definition: WorkflowDefinition) -> str:
    text = json.dumps(canonical(definition), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def load_definition(data: dict[str, Any]) -> WorkflowDefinition:
    """A stored definition back as the model (it was validated when defined)."""
    return WorkflowDefinition.model_validate(data)
