"""Reading task definitions from YAML and JSON: errors name the line and the field."""

from __future__ import annotations

import json

import pytest

from mcpexec.errors import InvalidRequest
from mcpexec.task_files import detect_format, parse_task
from mcpexec.tasks import content_hash

YAML = """\
name: nightly-report
description: The report of the previous day
shell: |
  ./report.sh --day "$MCPEXEC_PARAM_DAY"
timeout_s: 600
limits:
  memory_mb: 512
params:
  type: object
  properties:
    day: {type: string, format: date}
  required: [day]
"""


def test_yaml_and_json_of_the_same_content_are_the_same_version() -> None:
    from_yaml = parse_task(YAML, source="report.yaml")
    assert from_yaml.name == "nightly-report"
    assert from_yaml.limits.memory_mb == 512
    as_json = json.dumps(
        {
            "name": "nightly-report",
            "description": "The report of the previous day",
            "shell": './report.sh --day "$MCPEXEC_PARAM_DAY"\n',
            "timeout_s": 600,
            "limits": {"memory_mb": 512},
            "params": {
                "type": "object",
                "properties": {"day": {"type": "string", "format": "date"}},
                "required": ["day"],
            },
        },
        indent=2,
    )
    assert content_hash(parse_task(as_json, source="report.json")) == content_hash(from_yaml)


def test_the_name_comes_from_the_file_or_the_caller() -> None:
    body = YAML.replace("name: nightly-report\n", "")
    assert parse_task(body, name="nightly-report").name == "nightly-report"
    assert parse_task(YAML, name="nightly-report").name == "nightly-report"
    with pytest.raises(InvalidRequest, match=r"report.yaml:1: field 'name': the file says"):
        parse_task(YAML, name="other", source="report.yaml")
    with pytest.raises(InvalidRequest, match="field 'name': missing"):
        parse_task(body)


def test_dates_stay_text() -> None:
    text = YAML.replace("format: date}", "format: date, default: 2026-12-01}")
    definition = parse_task(text)
    assert definition.params["properties"]["day"]["default"] == "2026-12-01"


@pytest.mark.parametrize(
    ("text", "message", "details"),
    [
        (
            YAML.replace("timeout_s: 600", "timeout_s: 0"),
            "report.yaml:5: field 'timeout_s': Input should be greater than 0",
            {"field": "timeout_s", "line": 5},
        ),
        (
            YAML.replace("memory_mb: 512", "memory_mb: 1"),
            "report.yaml:7: field 'limits.memory_mb'",
            {"field": "limits.memory_mb", "line": 7},
        ),
        (
            YAML.replace("type: object", "type: objekt"),
            "report.yaml:8: field 'params': params schema at type",
            {"field": "params", "line": 8},
        ),
        (
            YAML + "surprise: 1\n",
            "report.yaml:13: field 'surprise': Extra inputs are not permitted",
            {"field": "surprise", "line": 13},
        ),
        (
            YAML + "timeout_s: 5\n",
            "report.yaml:13: field 'timeout_s' appears twice",
            {"line": 13},
        ),
        (
            YAML.replace("limits:\n", "limits: [\n"),
            "report.yaml:8: expected ',' or ']'",
            {"line": 8},
        ),
        ("a: &x [1]\nb: *x\n", "report.yaml:2: anchors and aliases are not allowed", {"line": 2}),
        ("name: a\n---\nname: b\n", "report.yaml: give exactly one YAML document, not 2", {}),
        ("- a\n- b\n", "report.yaml: a task definition is a mapping of fields", {"line": 1}),
    ],
)
def test_yaml_errors_name_line_and_field(
    text: str, message: str, details: dict[str, object]
) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_task(text, source="report.yaml")
    assert info.value.message.startswith(message), info.value.message
    assert info.value.code == "invalid_request"
    for key, value in details.items():
        assert info.value.details[key] == value


@pytest.mark.parametrize(
    ("text", "message", "details"),
    [
        ('{"name": "x",\n "shell": "a",}', "t.json:2:15: Expecting property name", {"line": 2}),
        (
            '{"name": "x",\n "shell": "a",\n "timeout_s": -1}',
            "t.json:3: field 'timeout_s'",
            {"line": 3, "field": "timeout_s"},
        ),
        ('{"name": "x", "shell": "a", "shell": "b"}', "t.json: field 'shell' appears twice", {}),
        ('{"name": "x", "shell": "a", "timeout_s": NaN}', "t.json: NaN is not a JSON number", {}),
    ],
)
def test_json_errors_name_line_and_field(
    text: str, message: str, details: dict[str, object]
) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_task(text, source="t.json")
    assert info.value.message.startswith(message), info.value.message
    for key, value in details.items():
        assert info.value.details[key] == value


def test_several_problems_are_all_named() -> None:
    text = YAML.replace("timeout_s: 600", "timeout_s: 0").replace("memory_mb: 512", "memory_mb: 1")
    with pytest.raises(InvalidRequest) as info:
        parse_task(text, source="r.yaml")
    assert "r.yaml:5: field 'timeout_s'" in info.value.message
    assert "r.yaml:7: field 'limits.memory_mb'" in info.value.message


def test_format_detection_and_size_cap() -> None:
    assert detect_format("{}", "a.yaml") == "yaml"
    assert detect_format("name: x", "a.JSON") == "json"
    assert detect_format('  {"name": "x"}') == "json"
    assert detect_format("name: x") == "yaml"
    with pytest.raises(InvalidRequest, match="larger than 2 MiB"):
        parse_task("shell: " + "x" * (3 * 1024 * 1024))
