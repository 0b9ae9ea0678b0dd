"""The published shapes of the MCP tools: compact JSON Schemas, titles and annotations.

A model reads ``tools/list`` in full on every conversation, so the schemas generated from the
tools' type hints (25.6 KB for 9 tools: every nested pydantic model, repeated per tool) are
replaced here by hand-written ones that say the same in a third of the size. Validation still
runs on the tools' pydantic argument models; ``tests/mcp_server/test_mcp_schemas.py`` holds the two
in step (same properties, every result validates against its output schema). Pattern for new
tools: reuse the fragments below, one short description per field, defaults stated once.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

from mcpexec.settings import Settings

Schema = dict[str, Any]

STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}
BOOL: Schema = {"type": "boolean"}
#: Any JSON value, typed: strict clients (``inspector --strict``) warn about a schema with no
#: validation keyword, and about ``type`` arrays (see :func:`_nullable`).
ANY: Schema = {
    "anyOf": [{"type": t} for t in ("object", "array", "string", "number", "boolean", "null")]
}
STR_MAP: Schema = {"type": "object", "additionalProperties": STR}
STATUS: Schema = {"enum": ["pending", "running", "completed", "failed", "cancelled"]}
RUN_ID: Schema = STR
FAILURE: Schema = {
    "anyOf": [{"type": "object"}, {"type": "null"}],
    "description": "kind (exit_code, timeout, ...), message",
}


def _nullable(schema: Schema) -> Schema:
    """``anyOf`` with null, not a ``type`` array: clients that map schemas onto one-type
    dialects (Gemini's OpenAPI subset) reject arrays (``inspector --strict`` warns)."""
    return {"anyOf": [schema, {"type": "null"}]}


def _obj(props: dict[str, Schema], required: tuple[str, ...] = (), **extra: Any) -> Schema:
    schema: Schema = {"type": "object", "properties": props, **extra}
    if required:
        schema["required"] = list(required)
    return schema


_LIMIT_NAMES = (
    "cpu_s",
    "memory_mb",
    "pids",
    "disk_mb",
    "file_size_mb",
    "open_files",
    "max_output_bytes",
)


def run_spec(settings: Settings) -> dict[str, Schema]:
    """The fields of a run spec shared by ``execute`` and ``submit_run``."""
    return {
        "command": {
            "type": "array",
            "items": STR,
            "minItems": 1,
            "description": 'argv, no shell: ["ls", "-l"]',
        },
        "shell": {"type": "string", "description": "run with sh -c"},
        "script": _obj(
            {"language": {"enum": ["python", "bash", "sh", "node"]}, "source": STR},
            ("language", "source"),
            additionalProperties=False,
        ),
        "env": STR_MAP,
        "inputs": {
            "type": "object",
            "description": "files put in the workdir: name -> text or {content, base64}",
            "additionalProperties": {"anyOf": [STR, {"type": "object"}]},
        },
        "timeout_s": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": f"kill the run after this many seconds "
            f"(default {settings.default_timeout_s:g})",
        },
        "network": {"type": "boolean", "default": False},
        "secrets": {
            "type": "array",
            "items": STR,
            "description": "names from mcpexec://secrets, set as env variables",
        },
        "labels": STR_MAP,
        "limits": {
            "type": "object",
            "additionalProperties": INT,
            "description": f"default: the server's; {', '.join(_LIMIT_NAMES)}",
        },
        "retry": {
            "type": "object",
            "description": "max_attempts, backoff (fixed|exponential), delay_s, max_delay_s, "
            "jitter, retry_on",
        },
        "idempotency_key": {
            "type": "string",
            "description": "a repeat with this key returns the first run",
        },
        "task": {"type": "string", "description": "task NAME[@VERSION]"},
        "params": {"type": "object"},
        # A tool of a downstream server as a run (issue 14); a call without a run is call_tool.
        "tool": {"type": "object", "description": "{name: server.tool, arguments}"},
    }


#: "Exactly one of command, shell, script, tool" is said in words, not as a top-level ``oneOf``:
#: the Anthropic and OpenAI tool APIs refuse ``oneOf``/``anyOf``/``allOf`` at the top of an
#: input schema, so a client forwarding it to a model would fail on every call.
ONE_KIND = "Exactly one of command, shell, script, tool or task."

MAX_BYTES = "max_bytes"


def _max_bytes(default: int, maximum: int, what: str) -> Schema:
    return {
        "type": "integer",
        "minimum": 0 if what == "stream tails" else 1,
        "maximum": maximum,
        "default": default,
        "description": f"size cap of {what}",
    }


def run_info() -> Schema:
    """The fields an agent acts on; the view has more (labels, times), all listed in
    additional properties."""
    return _obj(
        {
            "id": STR,
            "status": STATUS,
            "exit_code": _nullable(INT),
            "failure": FAILURE,
            "result": ANY,
            "attempts": INT,
            "cancel_requested": BOOL,
        },
    )


def execute_result() -> Schema:
    return _obj(
        {
            "run_id": STR,
            "status": STATUS,
            "exit_code": _nullable(INT),
            "failure": FAILURE,
            "stdout": {"type": "string", "description": "its tail"},
            "stderr": STR,
            "stdout_truncated": BOOL,
            "stderr_truncated": BOOL,
            "result": {**ANY, "description": "its result.json"},
            "artifacts": {"type": "array", "items": STR, "description": "see read_artifact"},
            "duration_s": _nullable(NUM),
        },
    )


def submit_result() -> Schema:
    return _obj({"run_id": STR, "status": STATUS, "created": BOOL})


def hints(*, read_only: bool, destructive: bool = False) -> ToolAnnotations:
    """``readOnlyHint`` lets clients auto-approve reads; ``destructiveHint`` marks cancel."""
    return ToolAnnotations(
        read_only_hint=read_only, destructive_hint=destructive if not read_only else None
    )


def bare(props: dict[str, Schema]) -> dict[str, Schema]:
    """The same properties without descriptions: for a tool whose description points to the
    tool that explains them (``submit_run`` takes ``execute``'s spec)."""
    return {k: {n: v for n, v in p.items() if n != "description"} for k, p in props.items()}


def publish(server: MCPServer[Any], schemas: dict[str, tuple[Schema, Schema]]) -> None:
    """Replace each tool's generated input and output schema by the compact one."""
    manager = server._tool_manager  # no public setter for a registered tool's schemas in mcp 2.3
    for name, (params, output) in schemas.items():
        tool = manager.get_tool(name)
        if tool is None:  # pragma: no cover - a programming error caught by the schema tests
            raise KeyError(name)
        tool.parameters = params
        tool.fn_metadata.output_schema = output


def _log_read() -> Schema:
    return _obj(
        {
            "run_id": STR,
            "stream": STR,
            "offset": INT,
            "next_offset": {"type": "integer", "description": "pass as offset to read on"},
            "data": STR,
            "still_writing": BOOL,
        },
    )


def _artifact() -> Schema:
    return {"type": "object"}


def tool_schemas(settings: Settings) -> dict[str, tuple[Schema, Schema]]:
    """Per tool: (input schema, output schema)."""
    spec = run_spec(settings)
    run_id = {"run_id": RUN_ID}
    wait = {"type": "number", "minimum": 0}
    execute_in = _obj(
        {
            **spec,
            "wait_s": {**wait, "maximum": 3600, "default": 40},
            MAX_BYTES: _max_bytes(16 * 1024, 1024 * 1024, "stream tails"),
        },
        description=ONE_KIND,
    )
    submit_in = _obj(
        {
            **bare(spec),
            "priority": {"type": "integer", "minimum": -100, "maximum": 100, "default": 0},
            "run_at": {"type": "string", "format": "date-time", "description": "start no sooner"},
            "worker_labels": {"type": "array", "items": STR},
            "notify": {"type": "object", "description": "{webhook: URL, on: [failed, ...]}"},
        },
        description=ONE_KIND,
    )
    run = run_info()
    return {
        "execute": (execute_in, execute_result()),
        "submit_run": (submit_in, submit_result()),
        "get_run": (
            _obj(
                {
                    **run_id,
                    "wait_s": {**wait, "maximum": 60, "default": 0},
                    "detail": {"type": "boolean", "default": False},
                },
                ("run_id",),
            ),
            run,
        ),
        "cancel_run": (_obj(run_id, ("run_id",)), run),
        "list_runs": (
            _obj(
                {
                    "status": {"type": "array", "items": STATUS},
                    "labels": {**STR_MAP, "description": "runs with all of these"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                    "cursor": {"type": "string", "description": "next_cursor of the last page"},
                }
            ),
            _obj(
                {
                    "runs": {"type": "array", "items": _obj({"id": STR, "status": STATUS})},
                    "next_cursor": _nullable(STR),
                },
            ),
        ),
        "read_logs": (
            _obj(
                {
                    **run_id,
                    "stream": {"enum": ["stdout", "stderr"], "default": "stdout"},
                    "offset": {"type": "integer", "minimum": 0, "default": 0},
                    MAX_BYTES: _max_bytes(64 * 1024, 1024 * 1024, "the stream"),
                },
                ("run_id",),
            ),
            _log_read(),
        ),
        "list_artifacts": (
            _obj(run_id, ("run_id",)),
            _obj(
                {"run_id": STR, "artifacts": {"type": "array", "items": _artifact()}},
            ),
        ),
        "read_artifact": (
            _obj(
                {
                    **run_id,
                    "name": {"type": "string", "description": "from list_artifacts"},
                    MAX_BYTES: _max_bytes(1024 * 1024, 8 * 1024 * 1024, "the file"),
                },
                ("run_id", "name"),
            ),
            _obj(
                {"name": STR, "mime_type": STR, "text": _nullable(STR), "truncated": BOOL},
            ),
        ),
        "rerun": (_obj(run_id, ("run_id",)), submit_result()),
    }
