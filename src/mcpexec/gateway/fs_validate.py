"""Checking tool arguments against the ``fs`` tools' own (small, flat) input schemas.

Only the keywords those schemas use: ``type`` (object, string, integer, boolean, array),
``required``, ``additionalProperties: false``, ``enum``, ``minimum``/``maximum``,
``minLength``, ``items``, ``maxItems``. Errors name the field.
"""

from __future__ import annotations

from typing import Any

from mcpexec.gateway.errors import InvalidArguments

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def _fail(field: str, problem: str) -> InvalidArguments:
    return InvalidArguments(f"{field}: {problem}", field=field)


def _check(field: str, schema: dict[str, Any], value: Any) -> None:
    kind = schema.get("type")
    if kind is not None and (
        not isinstance(value, _TYPES[kind]) or (kind == "integer" and isinstance(value, bool))
    ):
        raise _fail(field, f"must be of type {kind}")
    if "enum" in schema and value not in schema["enum"]:
        raise _fail(field, f"must be one of {', '.join(map(str, schema['enum']))}")
    if "minimum" in schema and value < schema["minimum"]:
        raise _fail(field, f"must be at least {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        raise _fail(field, f"must be at most {schema['maximum']}")
    if "minLength" in schema and len(value) < schema["minLength"]:
        raise _fail(field, f"must have at least {schema['minLength']} characters")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        raise _fail(field, f"must have at most {schema['maxItems']} items")
    if "items" in schema:
        for i, item in enumerate(value):
            _check(f"{field}[{i}]", schema["items"], item)


def validate_arguments(schema: dict[str, Any], arguments: Any) -> None:
    """Raise :class:`InvalidArguments` naming the first field that does not fit ``schema``."""
    if not isinstance(arguments, dict):
        raise _fail("arguments", "must be an object")
    properties: dict[str, Any] = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in arguments:
            raise _fail(name, "is required")
    for name, value in arguments.items():
        if name not in properties:
            if schema.get("additionalProperties", True) is False:
                raise _fail(name, "is not an argument of this tool")
            continue
        _check(name, properties[name], value)
