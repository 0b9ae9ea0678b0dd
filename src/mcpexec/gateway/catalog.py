"""The catalog: every server's tools under one namespace, and argument checks against schemas.

Every tool is reachable as ``server.tool``. Its bare name works too when no other server has
a tool of that name; when two do, neither bare name resolves (a caller must say which) and the
collision is reported — deterministic, independent of start order. Allow/deny globs
(``fnmatch``) of the server's config are applied here. Schemas are passed through as the
server sent them; arguments are checked with a real JSON Schema validator (``jsonschema``), so
``$ref``, ``anyOf`` and arrays without ``items`` mean what the schema says.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import jsonschema.exceptions
import jsonschema.validators
import referencing.exceptions

from mcpexec.gateway.errors import InvalidArguments, UnknownTool


@dataclass(frozen=True)
class CatalogTool:
    """One tool as the gateway shows it (``input_schema`` untouched)."""

    server: str
    name: str  # the server's own name for it
    description: str = ""
    input_schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})
    output_schema: Mapping[str, Any] | None = None
    title: str | None = None
    annotations: Mapping[str, Any] | None = None

    @property
    def qualified(self) -> str:
        return f"{self.server}.{self.name}"

    def to_dict(self) -> dict[str, Any]:
        """Seed 001's shape (``name``, ``description``, ``inputSchema``) plus the server."""
        out: dict[str, Any] = {
            "name": self.qualified,
            "server": self.server,
            "tool": self.name,
            "description": self.description,
            "inputSchema": dict(self.input_schema),
        }
        if self.output_schema is not None:
            out["outputSchema"] = dict(self.output_schema)
        if self.title:
            out["title"] = self.title
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@dataclass(frozen=True)
class Collision:
    """A bare name several servers offer: only ``server.tool`` reaches each of them."""

    name: str
    servers: tuple[str, ...]


def allowed(name: str, allow: Sequence[str] | None, deny: Sequence[str]) -> bool:
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in deny):
        return False
    return allow is None or any(fnmatch.fnmatchcase(name, pattern) for pattern in allow)


class Catalog:
    """An immutable snapshot; the gateway builds a new one whenever a server's tools change."""

    def __init__(self, tools: Iterable[CatalogTool]) -> None:
        ordered = sorted(tools, key=lambda t: (t.server, t.name))
        self._qualified = {t.qualified: t for t in ordered}
        by_bare: dict[str, list[CatalogTool]] = {}
        for tool in ordered:
            by_bare.setdefault(tool.name, []).append(tool)
        self._bare = {n: ts[0] for n, ts in by_bare.items() if len(ts) == 1}
        self.collisions = tuple(
            Collision(n, tuple(t.server for t in ts)) for n, ts in by_bare.items() if len(ts) > 1
        )
        self._tools = tuple(ordered)
        self._servers = {t.server for t in ordered}

    def tools(self, server: str | None = None) -> tuple[CatalogTool, ...]:
        return tuple(t for t in self._tools if server is None or t.server == server)

    def resolve(self, name: str, server: str | None = None) -> CatalogTool:
        """``server.tool``, a unique bare ``tool``, or ``tool`` with ``server`` given."""
        if server is not None:
            found = self._qualified.get(f"{server}.{name}")
            if found is None and name.startswith(f"{server}."):
                found = self._qualified.get(name)
        else:
            found = self._qualified.get(name) or self._bare.get(name)
        if found is not None:
            return found
        clash = next((c for c in self.collisions if c.name == name), None)
        if clash is not None and server is None:
            options = ", ".join(f"{s}.{name}" for s in clash.servers)
            raise UnknownTool(
                f"Tool '{name}' is offered by several servers; call one of {options}",
                tool=name,
                candidates=[f"{s}.{name}" for s in clash.servers],
            )
        where = f" on server '{server}'" if server else ""
        raise UnknownTool(f"No tool '{name}'{where}", tool=name, server=server)


def _field(error: jsonschema.exceptions.ValidationError) -> str:
    path = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.validator_value, list):
        missing = [
            n
            for n in error.validator_value
            if isinstance(error.instance, dict) and n not in error.instance
        ]
        path.extend(missing[:1])
    elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
        props = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        extra = sorted(k for k in error.instance if k not in props)
        path.extend(extra[:1])
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "arguments"


#: tool → (its schema object, its validator): building a validator costs more than checking
#: small arguments with it. The Gateway owns one (no module-level state).
ValidatorCache = dict[str, tuple[Mapping[str, Any], Any]]
_MAX_CACHED = 4096


def _validator(tool: CatalogTool, cache: ValidatorCache) -> Any:
    cached = cache.get(tool.qualified)
    if cached is not None and cached[0] is tool.input_schema:
        return cached[1]
    schema = dict(tool.input_schema)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls.check_schema(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    if len(cache) >= _MAX_CACHED:
        cache.clear()
    cache[tool.qualified] = (tool.input_schema, validator)
    return validator


def validate_arguments(
    tool: CatalogTool, arguments: Any, cache: ValidatorCache | None = None
) -> None:
    """Raise :class:`InvalidArguments` (``details.field``) when ``arguments`` do not fit."""
    if not isinstance(arguments, dict):
        raise InvalidArguments("arguments: must be an object", field="arguments")
    try:
        validator = _validator(tool, {} if cache is None else cache)
        error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
    except (jsonschema.exceptions.SchemaError, referencing.exceptions.Unresolvable):
        return  # the server's schema is broken ($ref to nowhere…): let the server judge
    if error is not None:
        name = _field(error)
        raise InvalidArguments(
            f"{name}: {error.message}"[:500], field=name, tool=tool.qualified, server=tool.server
        )
