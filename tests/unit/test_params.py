"""Parameter schemas, validation naming the parameter, and delivery as env + params.json."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mcpexec.errors import InvalidRequest
from mcpexec.params import (
    MAX_SCHEMA_DEPTH,
    PARAMS_FILE,
    check_params_schema,
    param_inputs,
    parse_param_args,
    validate_params,
)

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "day": {"type": "string", "format": "date"},
        "pages": {"type": "integer", "minimum": 1, "default": 3},
        "tags": {"type": "array", "items": {"type": "string"}},
        "dry_run": {"type": "boolean"},
    },
    "required": ["day"],
}


def nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        node = {"type": "array", "items": node}
    return {"type": "object", "properties": {"deep": node}}


@pytest.mark.parametrize(
    ("schema", "fragment"),
    [
        ({"type": "objekt"}, "params schema at type"),
        ({"type": "string"}, '"type": "object"'),
        ({"type": "object", "properties": {"Day": {}}}, "'Day': a parameter name"),
        ({"type": "object", "properties": {"day-of": {}}}, "'day-of'"),
        ({"type": "object", "required": ["x"]}, "requires 'x' but does not declare it"),
        ({"type": "object", "$ref": "https://example.com/s.json"}, "is not local"),
        ({"type": "object", "$ref": "file:///etc/passwd"}, "is not local"),
        ({"$schema": "http://json-schema.org/draft-04/schema#", "type": "object"}, "2020-12"),
        (
            {"type": "object", "properties": {"a": {"type": "string", "pattern": "a" * 300}}},
            "pattern is longer",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string", "pattern": "(?=a)"}}},
            "not RE2 syntax",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string", "pattern": "(a)\\1"}}},
            "not RE2 syntax",
        ),
        ({"type": "object", "patternProperties": {"^x": {}}}, "patternProperties"),
        (nested(MAX_SCHEMA_DEPTH), "nested deeper"),
        (
            {"type": "object", "properties": {f"p{i}": {} for i in range(101)}},
            "more than 100",
        ),
        (
            {"type": "object", "description": "x" * 70_000},
            "larger than 64 KiB",
        ),
    ],
)
def test_unsafe_or_invalid_schemas_are_refused(schema: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        check_params_schema(schema)


def test_good_schemas_pass() -> None:
    assert check_params_schema(SCHEMA) == SCHEMA
    assert check_params_schema({}) == {}
    local = {
        "type": "object",
        "$defs": {"day": {"type": "string"}},
        "properties": {"day": {"$ref": "#/$defs/day"}},
    }
    assert check_params_schema(local) == local


def test_validation_fills_defaults() -> None:
    assert validate_params(SCHEMA, {"day": "2026-12-01"}) == {"day": "2026-12-01", "pages": 3}


@pytest.mark.parametrize(
    ("params", "name", "fragment"),
    [
        ({}, "day", "'day' is a required property"),
        ({"day": "2026-13-01"}, "day", "is not a 'date'"),
        ({"day": "2026-12-01", "pages": 0}, "pages", "less than the minimum"),
        ({"day": "2026-12-01", "tags": ["a", 1]}, "tags", "is not of type 'string'"),
        ({"day": "2026-12-01", "dya": "x"}, "dya", "not declared by the task"),
        ({"day": "2026-12-01", "BAD": "x"}, "BAD", "a parameter name"),
        ({"day": "2026-12-01\0"}, "day", "is not a 'date'"),
    ],
)
def test_invalid_params_name_the_param(params: dict[str, Any], name: str, fragment: str) -> None:
    with pytest.raises(InvalidRequest, match=fragment) as info:
        validate_params(SCHEMA, params)
    assert info.value.details["param"] == name
    assert info.value.http_status == 422
    assert f"param {name!r}" in info.value.message


def test_nul_bytes_cannot_reach_the_environment() -> None:
    schema = {"type": "object", "properties": {"note": {"type": "string"}}}
    with pytest.raises(InvalidRequest, match="param 'note' contains a NUL byte"):
        validate_params(schema, {"note": "a\0b"})


def test_undeclared_params_need_an_explicit_open_schema() -> None:
    open_schema = {"type": "object", "additionalProperties": {"type": "string"}}
    assert validate_params(open_schema, {"anything": "x"}) == {"anything": "x"}
    with pytest.raises(InvalidRequest, match="param 'x': this task takes no parameters"):
        validate_params({}, {"x": 1})
    assert validate_params({}, {}) == {}


def test_params_size_is_bounded() -> None:
    schema = {"type": "object", "properties": {"blob": {"type": "string"}}}
    with pytest.raises(InvalidRequest, match="larger than 64 KiB"):
        validate_params(schema, {"blob": "x" * 70_000})


def test_param_inputs_are_data() -> None:
    values = {"day": "'; rm -rf / #", "pages": 3, "tags": ["a", "b"], "dry_run": True}
    inputs = param_inputs(values)
    assert inputs.env == {
        "MCPEXEC_PARAM_DAY": "'; rm -rf / #",
        "MCPEXEC_PARAM_PAGES": "3",
        "MCPEXEC_PARAM_TAGS": '["a","b"]',
        "MCPEXEC_PARAM_DRY_RUN": "true",
    }
    assert json.loads(inputs.files[PARAMS_FILE]) == values


def test_cli_pairs_are_typed_by_the_schema() -> None:
    pairs = ["day=2026-12-01", "pages=5", 'tags=["a"]', "dry_run=true"]
    assert parse_param_args(pairs, SCHEMA) == {
        "day": "2026-12-01",
        "pages": 5,
        "tags": ["a"],
        "dry_run": True,
    }
    # A string parameter keeps what looks like JSON as text; "a=b=c" splits at the first "=".
    assert parse_param_args(["day=3", "day=a=b"], SCHEMA) == {"day": "a=b"}
    assert parse_param_args(["day=42"], SCHEMA) == {"day": "42"}
    # Not JSON where JSON was expected: kept as text, so the schema's error names it.
    assert parse_param_args(["pages=many"], SCHEMA) == {"pages": "many"}
    with pytest.raises(InvalidRequest, match="write name=value"):
        parse_param_args(["day"], SCHEMA)


@pytest.mark.timeout(30)
def test_patterns_match_in_linear_time() -> None:
    """``(a+)+$`` backtracks exponentially in Python's re; RE2 answers at once."""
    schema = {"type": "object", "properties": {"word": {"type": "string", "pattern": "^(a+)+$"}}}
    check_params_schema(schema)
    with pytest.raises(InvalidRequest, match=r"param 'word': .* does not match"):
        validate_params(schema, {"word": "a" * 60_000 + "b"})
    assert validate_params(schema, {"word": "aaa"}) == {"word": "aaa"}
    names = {"type": "object", "additionalProperties": True, "propertyNames": {"pattern": "^x"}}
    with pytest.raises(InvalidRequest, match="does not match"):
        validate_params(names, {"y": 1})
