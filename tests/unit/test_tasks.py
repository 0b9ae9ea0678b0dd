"""Task definitions: validation, content hash and versions, diff, pins, run spec."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from mcpexec.errors import InvalidRequest
from mcpexec.models import TASK_REF_PATTERN, FailureKind, RetryPolicy, RunRequest
from mcpexec.params import PARAMS_FILE
from mcpexec.tasks import (
    TaskDefinition,
    canonical_content,
    content_hash,
    diff_tasks,
    next_version,
    parse_task_ref,
    task_run_spec,
    task_yaml,
)

REPORT: dict[str, Any] = {
    "name": "nightly-report",
    "description": "The report of the previous day",
    "shell": 'printf %s "$MCPEXEC_PARAM_DAY" > day.txt',
    "timeout_s": 600,
    "params": {
        "type": "object",
        "properties": {"day": {"type": "string"}, "pages": {"type": "integer", "default": 3}},
        "required": ["day"],
    },
}


def task(**changes: Any) -> TaskDefinition:
    return TaskDefinition.model_validate({**REPORT, **changes})


def test_same_content_same_hash_and_same_version() -> None:
    first = task()
    digest = content_hash(first)
    assert digest.startswith("sha256:")
    assert len(digest) == 7 + 64
    # Defaults spelled out, another key order, a priority name: the same content.
    again = TaskDefinition.model_validate(
        {
            "params": REPORT["params"],
            "timeout_s": 600.0,
            "network": False,
            "priority": "normal",
            "limits": {},
            "shell": REPORT["shell"],
            "description": REPORT["description"],
            "name": "nightly-report",
        }
    )
    assert content_hash(again) == digest
    assert next_version((1, digest), again) == (1, False)
    assert next_version(None, first) == (1, True)


def test_changed_content_is_the_next_version_and_going_back_is_a_change() -> None:
    v1, v2 = task(), task(timeout_s=900)
    assert content_hash(v1) != content_hash(v2)
    assert next_version((1, content_hash(v1)), v2) == (2, True)
    # Re-applying v1's file after v2: the latest differs, so it is version 3.
    assert next_version((2, content_hash(v2)), v1) == (3, True)


def test_the_hash_ignores_the_name_and_set_order() -> None:
    kinds = [FailureKind.EXIT_CODE, FailureKind.TIMEOUT, FailureKind.SIGNAL]
    a = task(retry=RetryPolicy(retry_on=frozenset(kinds)))
    b = task(name="other", retry={"retry_on": list(reversed(kinds))})
    assert content_hash(a) == content_hash(b)
    assert canonical_content(a)["retry"]["retry_on"] == ["exit_code", "signal", "timeout"]


def test_diff_shows_what_changed_line_by_line() -> None:
    v1 = task(shell="echo one\necho two\n")
    v2 = task(shell="echo one\necho three\n", timeout_s=900)
    lines = diff_tasks(v1, v2, "1", "2")
    assert lines[:2] == ["--- nightly-report@1", "+++ nightly-report@2"]
    assert "-  echo two" in lines
    assert "+  echo three" in lines
    assert "-timeout_s: 600.0" in lines
    assert "+timeout_s: 900.0" in lines
    assert "   echo one" in lines  # context, unchanged
    assert diff_tasks(v1, v1) == []


def test_task_yaml_is_canonical() -> None:
    text = task_yaml(task())
    assert text.splitlines()[:3] == [
        "name: nightly-report",
        "description: The report of the previous day",
        'shell: printf %s "$MCPEXEC_PARAM_DAY" > day.txt',
    ]
    assert "network" not in text  # defaults are left out


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"name": "Nightly"}, "task name 'Nightly'"),
        ({"name": "-x"}, "task name"),
        ({"name": "a/b"}, "task name"),
        ({"shell": None}, "exactly one of"),
        ({"command": ["x"]}, "exactly one of"),
        ({"env": {"MCPEXEC_X": "1"}}, "set by mcpexec"),
        ({"inputs": {"params.json": "{}"}}, "reserved"),
        ({"priority": "urgent"}, "low, normal, high"),
        ({"labels": {"bad key": "x"}}, "label key"),
        ({"params": {"type": "array"}}, '"type": "object"'),
        ({"surprise": 1}, "Extra inputs"),
    ],
)
def test_invalid_definitions_name_the_problem(changes: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        task(**changes)


@pytest.mark.parametrize(
    ("ref", "parsed"),
    [("nightly-report", ("nightly-report", None)), ("nightly-report@2", ("nightly-report", 2))],
)
def test_task_refs(ref: str, parsed: tuple[str, int | None]) -> None:
    assert parse_task_ref(ref) == parsed


@pytest.mark.parametrize(
    "ref",
    ["nightly-report@", "x@0", "x@00", "x@01", "x@v2", "X", "a@1@2", "a.", "a-", "a\n", "a@1\n"],
)
def test_bad_task_refs(ref: str) -> None:
    with pytest.raises(ValueError, match="NAME@VERSION"):
        parse_task_ref(ref)


def test_run_spec_carries_params_as_env_and_file() -> None:
    spec, env, values = task_run_spec(task(inputs={"a.txt": "x"}), {"day": "2026-12-01"})
    assert values == {"day": "2026-12-01", "pages": 3}
    assert env == {"MCPEXEC_PARAM_DAY": "2026-12-01", "MCPEXEC_PARAM_PAGES": "3"}
    assert set(spec.inputs) == {"a.txt", PARAMS_FILE}
    assert spec.shell == REPORT["shell"]  # the command line is untouched
    assert spec.env == {}


def test_run_spec_refuses_bad_params_naming_them() -> None:
    with pytest.raises(InvalidRequest, match="param 'day'") as info:
        task_run_spec(task(), {})
    assert info.value.details["param"] == "day"
    with pytest.raises(InvalidRequest, match="param 'pages'"):
        task_run_spec(task(), {"day": "x", "pages": "many"})


@pytest.mark.parametrize("value", ["'; rm -rf / #", "$(touch pwned)", '"; touch pwned; "', "`id`"])
def test_a_hostile_param_arrives_verbatim_and_runs_nothing(tmp_path: Path, value: str) -> None:
    """The task's own shell reads the value from its environment; nothing is spliced."""
    definition = task(shell='printf %s "$MCPEXEC_PARAM_DAY" > day.txt')
    spec, env, _ = task_run_spec(definition, {"day": value})
    assert spec.shell == definition.shell
    for name, content in spec.inputs.items():
        assert isinstance(content, str)
        (tmp_path / name).write_text(content)
    assert spec.shell is not None
    subprocess.run(
        ["/bin/sh", "-c", spec.shell],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", **env},
        check=True,
        timeout=30,
    )
    assert (tmp_path / "day.txt").read_text() == value
    assert (tmp_path / PARAMS_FILE).read_text().count(value.replace('"', '\\"')) == 1
    assert not (tmp_path / "pwned").exists()


@given(st.from_regex(TASK_REF_PATTERN, fullmatch=True))
def test_what_the_schema_calls_a_task_ref_is_one(ref: str) -> None:
    # The OpenAPI document's pattern and the parser are one rule: a fuzzer found 'an6e0e.' taken
    # by the document and refused by the server.
    name, version = parse_task_ref(ref)
    assert ref == name if version is None else ref == f"{name}@{version}"
    assert RunRequest(task=ref).task == ref
