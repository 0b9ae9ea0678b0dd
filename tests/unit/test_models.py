from __future__ import annotations

import pytest
from pydantic import ValidationError

from mcpexec.models import RunRequest


def test_exactly_one_kind() -> None:
    with pytest.raises(ValidationError, match="exactly one of"):
        RunRequest.model_validate({})
    with pytest.raises(ValidationError, match="exactly one of"):
        RunRequest.model_validate({"shell": "true", "command": ["true"]})
    assert RunRequest.model_validate({"command": ["true"]}).kind == "command"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"shell": "x", "env": {"1BAD": "x"}}, "not a valid variable name"),
        ({"shell": "x", "env": {"MCPEXEC_RUN_ID": "x"}}, "set by mcpexec"),
        ({"shell": "x", "inputs": {"../etc/passwd": "x"}}, "relative path"),
        ({"shell": "x", "inputs": {"/abs": "x"}}, "relative path"),
        ({"shell": "x", "inputs": {"a": {"content": "***", "base64": True}}}, "base64"),
        ({"shell": "x", "priority": "urgent"}, "low, normal, high"),
        ({"shell": "x", "priority": 1000}, "between"),
        ({"shell": "x", "run_at": "2026-01-01T00:00:00"}, "time zone"),
        ({"shell": "x", "timeout_s": 0}, "greater than 0"),
        ({"command": ["a\0b"]}, "NUL"),
        ({"shell": "x", "surprise": 1}, "Extra inputs"),
        ({"script": {"language": "cobol", "source": "x"}}, "python"),
    ],
)
def test_invalid_requests_name_the_problem(body: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        RunRequest.model_validate(body)


def test_priority_names_and_exec_spec() -> None:
    request = RunRequest.model_validate(
        {"shell": "echo hi", "priority": "high", "labels": {"team": "a"}, "timeout_s": 5}
    )
    assert request.priority == 10
    spec = request.exec_spec()
    assert spec.shell == "echo hi"
    assert spec.timeout_s == 5
    assert not hasattr(spec, "labels")
