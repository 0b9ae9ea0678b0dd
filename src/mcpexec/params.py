"""Task parameters: a JSON Schema per task, validation at submit, and delivery to the run as data.

Parameters never become part of a command line. A run of a task gets them two ways:

- ``MCPEXEC_PARAM_<NAME>`` environment variables (``NAME`` is the parameter name upper-cased):
  strings verbatim, every other value as compact JSON (``3``, ``true``, ``["a","b"]``).
- ``params.json`` in the working directory: the whole parameter object as JSON.

So a value such as ``'; rm -rf / #`` reaches the process as the bytes it is; a task's ``shell``
uses it as ``"$MCPEXEC_PARAM_NAME"``, never through a template.

Parameter names are ``[a-z][a-z0-9_]{0,63}``: lower case, so ``NAME.upper()`` is a valid
environment variable name and two parameters never map to the same variable. ``ExecSpec.env``
refuses ``MCPEXEC_*`` names from users, so :func:`param_inputs` returns the variables separately;
the integration layer adds them to the run's environment after validation (``params.json`` is an
ordinary input file, and a task may not declare an input of that name).

The schema is JSON Schema 2020-12 with ``"type": "object"`` at the top (``{}``: no parameters).
It is checked against the meta-schema and refused when it could reach outside (a ``$ref`` that is
not ``#...``) or when it is large or deep. ``pattern`` is matched by RE2, in time linear in the
value (Python's ``re`` backtracks: ``(a+)+$`` against a long value would hang the server), so
patterns use RE2 syntax (no lookaround, no backreferences); ``patternProperties`` is refused
(parameters are declared by name). Parameters the schema does not declare under ``properties``
are refused unless it sets ``additionalProperties`` to something other than ``false`` explicitly
(a typo must not pass silently).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import re2  # type: ignore[import-untyped]
from jsonschema import Draft202012Validator, SchemaError, ValidationError, validators

from mcpexec.errors import InvalidRequest

PARAM_ENV_PREFIX = "MCPEXEC_PARAM_"
PARAMS_FILE = "params.json"
PARAM_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_SCHEMA_BYTES = 64 * 1024
MAX_SCHEMA_DEPTH = 16
MAX_PARAMS = 100
MAX_PARAMS_BYTES = 64 * 1024
MAX_PATTERN = 256
_DRAFT = "https://json-schema.org/draft/2020-12/schema"


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a bad pattern is the caller's error, not a server log line


def _compile(pattern: str) -> Any:
    try:
        return re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error as exc:
        raise ValueError(
            f"params schema: pattern {pattern!r} is not RE2 syntax (no lookaround or "
            f"backreferences): {exc}"
        ) from None


def _re2_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    if validator.is_type(instance, "string") and _compile(pattern).search(instance) is None:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


# Draft 2020-12 with RE2 for "pattern" (also reached through propertyNames).
_Validator: Any = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator, {"pattern": _re2_pattern}
)


@dataclass(frozen=True)
class ParamInputs:
    """What a run of a task receives: env variables to add, and input files (name → content)."""

    env: dict[str, str]
    files: dict[str, str]


def check_params_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a task's parameter schema; ``ValueError`` naming the problem."""
    schema = dict(schema)
    if not schema:
        return schema
    text = _json(schema, "params")
    if len(text.encode()) > MAX_SCHEMA_BYTES:
        raise ValueError(f"params schema is larger than {MAX_SCHEMA_BYTES // 1024} KiB")
    if schema.get("$schema", _DRAFT) != _DRAFT:
        raise ValueError(f"params schema: only JSON Schema 2020-12 ($schema {_DRAFT!r})")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(top)"
        raise ValueError(f"params schema at {where}: {exc.message}") from None
    if schema.get("type") != "object":
        raise ValueError('params schema must have "type": "object" (parameters are named)')
    properties = schema.get("properties", {})
    for name in properties:
        _check_name(name, "params schema declares")
    if len(properties) > MAX_PARAMS:
        raise ValueError(f"params schema declares more than {MAX_PARAMS} parameters")
    for name in schema.get("required", []):
        if name not in properties:
            raise ValueError(f"params schema requires {name!r} but does not declare it")
    _walk(schema, depth=0)
    return schema


def validate_params(schema: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """Check submitted parameters; fill top-level defaults. ``InvalidRequest`` names the param."""
    values = dict(params)
    if not schema:
        if values:
            raise InvalidRequest(
                f"param {next(iter(values))!r}: this task takes no parameters",
                param=next(iter(values)),
            )
        return values
    properties: dict[str, Any] = schema.get("properties", {})
    open_ended = schema.get("additionalProperties", False) is not False
    for name in values:
        _check_name(name, "param", error=InvalidRequest)
        if name not in properties and not open_ended:
            known = ", ".join(sorted(properties)) or "none"
            raise InvalidRequest(
                f"param {name!r} is not declared by the task (its parameters: {known})",
                param=name,
            )
    for name, sub in properties.items():
        if name not in values and isinstance(sub, dict) and "default" in sub:
            values[name] = sub["default"]
    if len(_json(values, "params", error=InvalidRequest).encode()) > MAX_PARAMS_BYTES:
        raise InvalidRequest(f"params are larger than {MAX_PARAMS_BYTES // 1024} KiB")
    validator = _Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(values), key=lambda e: [str(p) for p in e.path])
    if errors:
        first = errors[0]
        param = str(first.path[0]) if first.path else _missing(first, values)
        label = f"param {param!r}" if param else "params"
        raise InvalidRequest(
            f"{label}: {first.message}",
            param=param,
            errors=[e.message for e in errors[:10]],
        )
    for name, value in values.items():
        if isinstance(value, str) and "\0" in value:
            raise InvalidRequest(f"param {name!r} contains a NUL byte", param=name)
    return values


def param_inputs(params: Mapping[str, Any]) -> ParamInputs:
    """The run inputs of validated parameters: env variables and ``params.json``, as data."""
    env = {}
    for name, value in params.items():
        _check_name(name, "param", error=InvalidRequest)
        env[PARAM_ENV_PREFIX + name.upper()] = value if isinstance(value, str) else _compact(value)
    content = json.dumps(dict(params), sort_keys=True, ensure_ascii=False, indent=2) + "\n"
    return ParamInputs(env=env, files={PARAMS_FILE: content})


def parse_param_args(pairs: Iterable[str], schema: Mapping[str, Any]) -> dict[str, Any]:
    """``name=value`` pairs (the CLI's ``--param``) → parameters, typed by the schema.

    A value is taken verbatim when the parameter is declared a string (or may be one), else
    read as JSON (``n=3``, ``flag=true``, ``tags=["a"]``) and, failing that, kept as text so the
    schema's own error names it.
    """
    properties: dict[str, Any] = schema.get("properties", {})
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep:
            raise InvalidRequest(f"param {pair!r}: write name=value", param=pair)
        declared = properties.get(name, {})
        types = declared.get("type") if isinstance(declared, dict) else None
        allowed = types if isinstance(types, list) else [types]
        if "string" in allowed or (types is None and declared):
            out[name] = raw
            continue
        try:
            out[name] = json.loads(raw)
        except ValueError:
            out[name] = raw
    return out


def _check_name(name: Any, what: str, error: type[Exception] = ValueError) -> None:
    if not isinstance(name, str) or not PARAM_NAME.match(name):
        message = (
            f"{what} {name!r}: a parameter name is a lower-case letter, then up to 63 lower-case "
            "letters, digits or '_'"
        )
        if error is InvalidRequest:
            raise InvalidRequest(message, param=str(name))
        raise error(message)


def _walk(node: Any, depth: int) -> None:
    """Refuse what could reach outside the schema or make validation unbounded."""
    if depth > MAX_SCHEMA_DEPTH:
        raise ValueError(f"params schema is nested deeper than {MAX_SCHEMA_DEPTH} levels")
    if isinstance(node, list):
        for item in node:
            _walk(item, depth + 1)
        return
    if not isinstance(node, dict):
        return
    for key in ("$ref", "$dynamicRef"):
        ref = node.get(key)
        if isinstance(ref, str) and not ref.startswith("#"):
            raise ValueError(f"params schema: {key} {ref!r} is not local (only '#...' refs)")
    if "patternProperties" in node:
        raise ValueError("params schema: patternProperties is not supported; declare properties")
    pattern = node.get("pattern")
    if isinstance(pattern, str):
        if len(pattern) > MAX_PATTERN:
            raise ValueError(f"params schema: a pattern is longer than {MAX_PATTERN} characters")
        _compile(pattern)
    for value in node.values():
        _walk(value, depth + 1)


def _missing(error: Any, values: Mapping[str, Any]) -> str | None:
    """The parameter a top-level ``required`` error is about."""
    if error.validator == "required" and isinstance(error.validator_value, list):
        for name in error.validator_value:
            if name not in values:
                return str(name)
    return None


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def _json(value: Any, what: str, error: type[Exception] = ValueError) -> str:
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise error(f"{what} must be plain JSON: {exc}") from None
