"""Tasks: named, versioned definitions of work. Pure: the model, its content hash, diffs, pins.

A task definition is a run spec (``ExecSpec``: ``command``, ``shell`` or ``script`` plus the
runtime hints ``timeout_s``, ``limits``, ``network``, ``env``, ``secrets``, ``inputs``; a ``tool``
kind joins when ExecSpec gets one) plus what makes it a task: ``name``, ``description``, ``retry``,
default ``priority``, ``labels`` and ``params`` (a JSON Schema, see ``mcpexec.params``). The file
format is flat, like a run request::

    name: nightly-report
    description: The report of the previous day
    shell: ./report.sh --day "$MCPEXEC_PARAM_DAY"
    timeout_s: 600
    params:
      type: object
      properties: {day: {type: string, format: date}}
      required: [day]

Versions are immutable. Defining a task whose content hash equals its latest version's changes
nothing (a deploy script may re-apply); any other content becomes the next version
(:func:`next_version`). The hash covers everything but the name, with defaults left out, so
spelling a default out (``network: false``) is the same content.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Mapping
from enum import Enum
from typing import Any

import yaml
from pydantic import Field, field_validator

from mcpexec.models import (
    INPUT_NAME_PATTERN,
    TASK_NAME_PATTERN,
    TASK_REF_PATTERN,
    ExecSpec,
    InputFile,
    JsonObject,
    Labels,
    Priority,
    RetryPolicy,
    Text,
    WorkerLabels,
    check_labels_shape,
)
from mcpexec.params import PARAMS_FILE, check_params_schema, param_inputs, validate_params

# fullmatch, not match: ``$`` alone lets a trailing newline through.
TASK_NAME = re.compile(TASK_NAME_PATTERN.removeprefix("^").removesuffix("$"))
TASK_REF = re.compile(TASK_REF_PATTERN.removeprefix("^").removesuffix("$"))


class TaskDefinition(ExecSpec):
    """One version's content. Validated like a run request, plus the task's own fields."""

    name: str = Field(max_length=64, description="lower-case letters, digits, '.', '_', '-'")
    description: str = Field(default="", max_length=4096)
    params: JsonObject = Field(
        default_factory=dict, description="JSON Schema (2020-12) of the parameters; {}: none"
    )
    retry: RetryPolicy | None = None
    priority: Priority = 0
    labels: Labels = Field(default_factory=dict)
    #: Only workers with all of these run the task's runs (with those a submit adds).
    worker_labels: WorkerLabels = Field(default_factory=list)
    inputs: dict[Text, str | InputFile] = Field(
        default_factory=dict,
        description=f"files written into the working directory first ({PARAMS_FILE!r}: reserved)",
        json_schema_extra={
            "propertyNames": {
                "allOf": [{"pattern": INPUT_NAME_PATTERN}, {"not": {"const": PARAMS_FILE}}]
            }
        },
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not TASK_NAME.fullmatch(value):
            raise ValueError(
                f"task name {value!r}: 1-64 lower-case letters, digits, '.', '_' or '-', "
                "starting and ending with a letter or digit"
            )
        return value

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_params_schema(value)

    @field_validator("inputs")
    @classmethod
    def _reserved_input(cls, value: dict[str, str | InputFile]) -> dict[str, str | InputFile]:
        if PARAMS_FILE in value:
            raise ValueError(f"input name {PARAMS_FILE!r} is reserved for the task's parameters")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: dict[str, str]) -> dict[str, str]:
        return check_labels_shape(labels)

    def exec_spec(self) -> ExecSpec:
        """The run spec part, as a run of this task gets it (before parameters)."""
        return ExecSpec.model_validate(self.model_dump(include=set(ExecSpec.model_fields)))


def canonical_content(task: TaskDefinition) -> dict[str, Any]:
    """The content the hash and the diff are made of: no name, no defaults, sets sorted."""
    data = task.model_dump(mode="python", exclude={"name"}, exclude_defaults=True)
    canon: dict[str, Any] = _canon(data)
    return canon


def content_hash(task: TaskDefinition) -> str:
    """``sha256:<hex>`` of the canonical JSON of the content; equal content, equal hash."""
    text = json.dumps(
        canonical_content(task),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def next_version(latest: tuple[int, str] | None, task: TaskDefinition) -> tuple[int, bool]:
    """Which version defining ``task`` yields, given the latest ``(version, content_hash)``.

    Returns ``(version, created)``: the latest version unchanged when the content is the same,
    else a new one. Content equal to an older version is a new version too: the latest is the
    one in force, and going back is a change.
    """
    if latest is None:
        return 1, True
    version, digest = latest
    if digest == content_hash(task):
        return version, False
    return version + 1, True


def task_yaml(task: TaskDefinition) -> str:
    """The definition as canonical YAML: name and description first, the rest in field order,
    defaults left out, multi-line text as literal blocks."""
    content = canonical_content(task)
    head = {"name": task.name, "description": content.pop("description", None)}
    body = {k: v for k, v in head.items() if v is not None} | content
    return yaml.dump(body, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def diff_tasks(
    old: TaskDefinition, new: TaskDefinition, old_label: str = "v1", new_label: str = "v2"
) -> list[str]:
    """A unified diff of two versions' canonical YAML, one line per item; [] when equal."""
    return list(
        difflib.unified_diff(
            task_yaml(old).splitlines(),
            task_yaml(new).splitlines(),
            fromfile=f"{old.name}@{old_label}",
            tofile=f"{new.name}@{new_label}",
            lineterm="",
        )
    )


def parse_task_ref(ref: str) -> tuple[str, int | None]:
    """``name`` or ``name@version`` (as in ``--task nightly-report@2``) → (name, version)."""
    if not TASK_REF.fullmatch(ref):
        raise ValueError(f"task {ref!r}: write NAME or NAME@VERSION (a version is 1, 2, ...)")
    name, sep, version = ref.partition("@")
    return name, int(version) if sep else None


def task_run_spec(
    task: TaskDefinition, params: Mapping[str, Any]
) -> tuple[ExecSpec, dict[str, str], dict[str, Any]]:
    """What a run of ``task`` with ``params`` executes, as data.

    Validates ``params`` against the task's schema (``InvalidRequest`` naming the parameter) and
    returns the run spec with ``params.json`` among its inputs, the ``MCPEXEC_PARAM_*``
    variables the integration layer adds to the run's environment (``ExecSpec.env`` refuses
    them), and the validated parameters (defaults filled) to record on the run.
    """
    values = validate_params(task.params, params)
    inputs = param_inputs(values)
    spec = task.exec_spec()
    spec = spec.model_copy(update={"inputs": {**spec.inputs, **inputs.files}})
    return spec, inputs.env, values


def _canon(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _canon(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted((_canon(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, list | tuple):
        return [_canon(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    return value


class _Dumper(yaml.SafeDumper):
    """Safe YAML whose multi-line strings are literal blocks, so a script diffs line by line."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)
