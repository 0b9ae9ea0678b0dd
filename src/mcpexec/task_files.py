"""Reading a task definition from YAML or JSON text, with errors that name the line and field.

YAML is read safely and strictly: one document, no duplicate keys, no anchors or aliases (they
can make a small file expand without bound), and dates stay text (``day: 2026-12-01`` is the
string, as in JSON). Errors are ``InvalidRequest`` whose message starts with
``SOURCE:LINE:`` and whose details carry ``line`` and ``field``.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import yaml
from pydantic import ValidationError
from yaml.nodes import MappingNode, Node, SequenceNode

from mcpexec.errors import InvalidRequest
from mcpexec.tasks import TaskDefinition

MAX_DEFINITION_BYTES = 2 * 1024 * 1024
Format = Literal["yaml", "json"]


def detect_format(text: str, filename: str | None = None) -> Format:
    """By extension (``.json``, ``.yaml``/``.yml``), else JSON when the text starts with ``{``."""
    if filename:
        lowered = filename.lower()
        if lowered.endswith(".json"):
            return "json"
        if lowered.endswith((".yaml", ".yml")):
            return "yaml"
    return "json" if text.lstrip().startswith("{") else "yaml"


def parse_task(
    text: str,
    *,
    name: str | None = None,
    fmt: Format | None = None,
    source: str = "definition",
) -> TaskDefinition:
    """Parse and validate one task definition.

    ``name`` (from the CLI argument or the URL) is used when the text has none and must agree
    with it when it has one.
    """
    if len(text.encode()) > MAX_DEFINITION_BYTES:
        raise InvalidRequest(f"{source}: larger than {MAX_DEFINITION_BYTES // (1024 * 1024)} MiB")
    fmt = fmt or detect_format(text, source)
    data = _load_json(text, source) if fmt == "json" else _load_yaml(text, source)
    if not isinstance(data, dict):
        raise InvalidRequest(f"{source}: a task definition is a mapping of fields", line=1)
    given = data.get("name")
    if name is not None:
        if given is not None and given != name:
            line = _line(text, ("name",))
            raise InvalidRequest(
                f"{source}:{line}: field 'name': the file says {given!r}, not {name!r}",
                field="name",
                line=line,
            )
        data = {**data, "name": name}
    elif given is None:
        raise InvalidRequest(f"{source}: field 'name': missing (give it in the file)", field="name")
    try:
        return TaskDefinition.model_validate(data)
    except ValidationError as exc:
        raise _field_error(exc, text, source) from None


def _field_error(exc: ValidationError, text: str, source: str) -> InvalidRequest:
    problems = []
    first: tuple[str, int | None] | None = None
    for error in exc.errors()[:5]:
        loc = tuple(error["loc"])
        field = ".".join(str(p) for p in loc) or "(definition)"
        line = _line(text, loc) if loc else None
        message = str(error["msg"]).removeprefix("Value error, ")
        where = f"{source}:{line}" if line else source
        problems.append(f"{where}: field {field!r}: {message}")
        first = first or (field, line)
    assert first is not None
    return InvalidRequest("; ".join(problems), field=first[0], line=first[1])


def _load_json(text: str, source: str) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in items:
            if key in seen:
                raise InvalidRequest(f"{source}: field {key!r} appears twice", field=key)
            seen[key] = value
        return seen

    def constant(value: str) -> Any:
        raise InvalidRequest(f"{source}: {value} is not a JSON number")

    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(
            f"{source}:{exc.lineno}:{exc.colno}: {exc.msg}", line=exc.lineno, column=exc.colno
        ) from None


class _Loader(yaml.SafeLoader):
    """SafeLoader without timestamps, aliases or duplicate keys."""

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.MarkedYAMLError(
                None, None, "anchors and aliases are not allowed", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.MarkedYAMLError(
                    None, None, f"field {key!r} appears twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _load_yaml(text: str, source: str) -> Any:
    try:
        documents = list(yaml.load_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "not valid YAML"
        where = f"{source}:{line}" if line else source
        raise InvalidRequest(f"{where}: {problem}", line=line) from None
    except yaml.YAMLError as exc:
        raise InvalidRequest(f"{source}: not valid YAML: {exc}") from None
    if len(documents) != 1:
        raise InvalidRequest(f"{source}: give exactly one YAML document, not {len(documents)}")
    return documents[0]


def _line(text: str, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the deepest key of ``loc`` that the text has (JSON reads as YAML)."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if isinstance(node, MappingNode):
            match = next((kv for kv in node.value if kv[0].value == str(part)), None)
            if match is None:
                break
            line = match[0].start_mark.line + 1
            node = match[1]
        elif isinstance(node, SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line
