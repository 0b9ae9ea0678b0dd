"""How ``/mcp`` answers each POSTed request: one JSON body, or an SSE stream.

The SDK (mcp 2.3) takes that choice once per server (``json_response``), and a stream is what
costs: a 2025-11-25 request answered as a stream takes serve twice the CPU of the same
request answered as JSON (a stream writer, memory streams and tasks per POST), a 2026-07-28
one a third more (docs/benchmarks.md, "JSON answers for reads"). A stream is needed only by a
request that can send something before its answer, or that its client cancels by hanging up
(2026-07-28 has no other way to cancel): one that asks for progress (``progressToken``) or
that waits or acts (``execute``, ``get_run`` with ``wait_s``, a downstream tool, a workflow).

So :func:`answers_as_json` says JSON for a read that cannot wait: ``tools/list``,
``resources/read`` and the other listings, and ``tools/call`` of a read-only tool
(``readOnlyHint``) without a positive ``wait_s``, none of them with a ``progressToken``.
``initialize`` keeps the stream: the 2025-11-25 session's own task starts inside it and
inherits its choice, and that task must route every other request's notifications to its
stream (a JSON answer has no notifications: a read without a progress token sends none).

:func:`choose_per_request` makes the SDK's flag follow that choice: the flag is read only in
boolean tests, and the object put in its place answers them from a context variable that
:class:`~mcpexec.mcp_server.guard.McpHttpGuard` sets for the request's task.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

#: Requests that never wait and send nothing before their answer (``tools/call``: see below).
_READS = frozenset(
    {
        "ping",
        "tools/list",
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "prompts/list",
        "completion/complete",
    }
)

_JSON = contextvars.ContextVar("mcpexec_mcp_json_answer", default=False)


class _PerRequest:
    """Stands for the SDK's ``json_response`` / ``is_json_response_enabled`` flag: true in a
    request whose answer is JSON."""

    def __bool__(self) -> bool:
        return _JSON.get()

    def __repr__(self) -> str:
        return "<JSON answer per request>"


PER_REQUEST = _PerRequest()


def choose_per_request(manager: StreamableHTTPSessionManager) -> None:
    """Let each request choose: the manager hands its flag to the 2026-07-28 handler per
    request and to each 2025-11-25 session's transport, which tests it per request."""
    manager.json_response = PER_REQUEST  # type: ignore[assignment]  # a bool in every test


@contextmanager
def answering(as_json: bool) -> Iterator[None]:
    """The answer's form for the request handled inside (its task and what it starts)."""
    token = _JSON.set(as_json)
    try:
        yield
    finally:
        _JSON.reset(token)


def answers_as_json(message: Any, read_only_tools: frozenset[str]) -> bool:
    """Whether the JSON-RPC ``message`` (parsed) gets a JSON answer (see the module's doc)."""
    if not isinstance(message, dict) or "id" not in message:
        return False  # a notification (202), a batch or a response: the SDK's way
    params = message.get("params")
    params = params if isinstance(params, dict) else {}
    meta = params.get("_meta")
    if isinstance(meta, dict) and meta.get("progressToken") is not None:
        return False
    method = message.get("method")
    if method != "tools/call":
        return method in _READS
    if params.get("name") not in read_only_tools or "task" in params:
        return False
    arguments = params.get("arguments")
    wait = arguments.get("wait_s", 0) if isinstance(arguments, dict) else 0
    # A wait_s that is not a number <= 0 may wait (or is refused): the stream, as before.
    return isinstance(wait, int | float) and not isinstance(wait, bool) and wait <= 0
