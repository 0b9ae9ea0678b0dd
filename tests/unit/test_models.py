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
        ({"shell": "x", "run_at": 1767225600}, "not a number"),
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


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"shell": "x", "labels": {"a": "\ud800"}}, ("labels", "a")),
        ({"shell": "x", "env": {"A": "\udfff"}}, ("env", "A")),
        ({"shell": "x", "inputs": {"f": "\ud800"}}, ("inputs",)),
        ({"shell": "x", "inputs": {"f": {"content": "\ud800"}}}, ("inputs", "f")),
        ({"shell": "\ud800"}, ("shell",)),
        ({"script": {"language": "sh", "source": "\ud800"}}, ("script", "source")),
        ({"shell": "x", "idempotency_key": "\ud800"}, ("idempotency_key",)),
        ({"shell": "x", "secrets": ["\ud800"]}, ("secrets", 0)),
    ],
)
def test_lone_surrogates_are_refused_where_they_are(
    body: dict[str, object], loc: tuple[object, ...]
) -> None:
    with pytest.raises(ValidationError) as info:
        RunRequest.model_validate(body)
    errors = info.value.errors()
    assert any(e["loc"][: len(loc)] == loc for e in errors), errors


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"shell": "a\0b"}, "shell may not contain NUL"),
        ({"script": {"language": "sh", "source": "\0"}}, "script source may not contain NUL"),
        ({"shell": "x", "env": {"A": "x" * (128 * 1024)}}, "env 'A'"),
        ({"shell": "é" * 70_000}, "shell is 140000 bytes"),
        ({"command": ["é" * 70_000]}, "argument 0 is 140000 bytes"),
        ({"shell": "x", "env": {f"V{i}": "x" * 100_000 for i in range(11)}}, "at most 1048576"),
        (
            {"shell": "x", "run_at": "0001-01-01T00:00:00+01:00"},
            "run_at .* is out of range once converted",
        ),
        (
            {"shell": "x", "run_at": "9999-12-31T23:59:59-01:00"},
            "run_at .* is out of range once converted",
        ),
    ],
)
def test_exec_limits_and_date_edges(body: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        RunRequest.model_validate(body)


def test_largest_accepted_values() -> None:
    request = RunRequest.model_validate(
        {"command": ["x" * (128 * 1024 - 1)], "env": {"A": "y" * (128 * 1024 - 3)}}
    )
    assert len(request.command or []) == 1
    assert RunRequest.model_validate({"shell": "x", "run_at": "0001-01-01T00:51:00Z"}).run_at


def test_same_request_ignores_spelling_not_content() -> None:
    from datetime import UTC, datetime

    from mcpexec.models import DEFAULT_RETRY, Run, RunStatus

    spec = RunRequest.model_validate({"shell": "echo a"}).exec_spec()
    run = Run(
        id="r",
        seq=1,
        tenant="default",
        status=RunStatus.PENDING,
        spec=spec,
        retry=DEFAULT_RETRY,
        priority=0,
        labels={},
        created_at=datetime.now(UTC),
    )
    again = RunRequest.model_validate({"labels": {}, "shell": "echo a", "priority": "normal"})
    assert run.same_request(again.exec_spec(), DEFAULT_RETRY, again.priority, {}, None)
    other = RunRequest.model_validate({"shell": "echo b"})
    assert not run.same_request(other.exec_spec(), DEFAULT_RETRY, 0, {}, None)
    assert not run.same_request(spec, DEFAULT_RETRY, 10, {}, None)
    assert not run.same_request(spec, DEFAULT_RETRY, 0, {"a": "b"}, None)


# JSON's true is not 1 and "5" is not 5: the OpenAPI document calls both invalid, and a request
# it calls invalid must be refused (schemathesis found ``"cpu_s": true`` taken as 1 by
# ``PUT /api/v1/tenants/{id}``).
@pytest.mark.parametrize(
    "body",
    [
        {"limits": {"cpu_s": True}},
        {"limits": {"memory_mb": "512"}},
        {"timeout_s": True},
        {"timeout_s": "30"},
        {"network": "true"},
        {"network": 1},
        {"retry": {"max_attempts": True}},
        {"retry": {"delay_s": "1"}},
        {"retry": {"jitter": 0}},
        {"inputs": {"a": {"content": "x", "base64": "no"}}},
        {"priority": "5"},
        {"priority": True},
    ],
)
def test_numbers_and_booleans_are_json_numbers_and_booleans(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RunRequest.model_validate({"shell": "x", **body})


def test_strictness_keeps_what_json_means() -> None:
    run = RunRequest.model_validate(
        {"shell": "x", "timeout_s": 30, "priority": 5.0, "limits": {"cpu_s": 2.0}, "network": True}
    )
    # JSON's 2.0 is the integer 2 (schemathesis sends it for "type": "integer").
    assert (run.timeout_s, run.priority, run.limits.cpu_s, run.network) == (30.0, 5, 2, True)
    assert isinstance(run.limits.cpu_s, int)
    with pytest.raises(ValidationError, match="integer"):
        RunRequest.model_validate({"shell": "x", "limits": {"cpu_s": 2.5}})
    assert RunRequest.model_validate({"shell": "x", "priority": "high"}).priority == 10


@pytest.mark.parametrize(
    "quota",
    [{"max_concurrent": True}, {"max_queued": "5"}, {"default_limits": {"cpu_s": True}}],
)
def test_tenant_quotas_take_json_numbers_only(quota: dict[str, object]) -> None:
    from mcpexec.api.routes.tenancy import TenantQuotas

    with pytest.raises(ValidationError):
        TenantQuotas.model_validate(quota)
    assert TenantQuotas.model_validate({"max_concurrent": 3.0}).max_concurrent == 3


@pytest.mark.parametrize(
    "spec",
    [{"every": True}, {"every": 60, "jitter_s": True}, {"every": 60, "paused": "yes"}],
)
def test_schedule_policies_take_json_types_only(spec: dict[str, object]) -> None:
    from mcpexec.schedule_ops import ScheduleChanges
    from mcpexec.schedules import ScheduleSpec

    with pytest.raises(ValidationError):
        ScheduleSpec.model_validate(spec)
    with pytest.raises(ValidationError):
        ScheduleChanges.model_validate(spec)


def test_bounds_reach_the_document_as_json_schema() -> None:
    """A validator in an ``int | None`` field's type makes pydantic write ``ge``/``le``, which
    JSON Schema does not know: the fuzzer then sends 0 for a ``>= 1`` field as valid data."""
    from mcpexec.api.routes.gateway import ToolCallBody
    from mcpexec.api.routes.tenancy import TenantCreate, TokenCreate
    from mcpexec.schedule_ops import ScheduleChanges
    from mcpexec.schedules import ScheduleSpec

    def keys(node: object) -> set[str]:
        if isinstance(node, dict):
            return set(node) | {k for v in node.values() for k in keys(v)}
        if isinstance(node, list):
            return {k for v in node for k in keys(v)}
        return set()

    models = (RunRequest, TenantCreate, TokenCreate, ScheduleSpec, ScheduleChanges, ToolCallBody)
    found = set().union(*(keys(m.model_json_schema()) for m in models))
    assert "minimum" in found
    assert not found & {"ge", "le", "gt", "lt"}


def test_worker_labels_are_checked_sorted_and_deduplicated() -> None:
    request = RunRequest.model_validate(
        {"command": ["true"], "worker_labels": ["gpu", "cuda-12", "gpu"]}
    )
    assert request.worker_labels == ["cuda-12", "gpu"]
    assert RunRequest.model_validate({"command": ["true"]}).worker_labels == []
    for bad, message in (
        (["GPU"], "worker label 'GPU'"),
        (["-gpu"], "worker label '-gpu'"),
        (["a" * 33], "worker label"),
        ([""], "worker label ''"),
        ([1], "worker label 1"),
        ("gpu", "must be a list"),
        ([f"l{i}" for i in range(17)], "at most 16 worker labels"),
    ):
        with pytest.raises(ValidationError, match=message):
            RunRequest.model_validate({"command": ["true"], "worker_labels": bad})


def test_worker_labels_setting_is_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    from mcpexec.errors import ConfigError
    from mcpexec.settings import load_settings

    monkeypatch.setenv("MCPEXEC_WORKER_LABELS", "gpu, cuda,gpu")
    assert load_settings().worker_labels == ["cuda", "gpu"]
    assert load_settings(worker_labels="arm64").worker_labels == ["arm64"]
    with pytest.raises(ConfigError, match="worker label 'Big GPU'"):
        load_settings(worker_labels="Big GPU")
