"""An ASGI layer in front of ``/mcp`` for what the SDK's transport leaves out.

- Header values are trimmed of surrounding spaces and tabs (RFC 9110 §5.5: they are not part
  of the value), so ``Mcp-Name: list_runs  `` names ``list_runs``.
- ``Authorization`` goes through :func:`mcpexec.bearer.bearer_token`, the REST API's parser,
  so a token the REST API accepts is accepted here (``Bearer  TOKEN`` with two spaces).
- ``tasks/*`` requests (2026-07-28) whose ``Mcp-Name`` header names another task than
  ``params.taskId`` are refused with HTTP 400 and JSON-RPC -32020, as the SDK does for the
  core methods. A missing header is allowed (the extension's clients do not all send it).
- Each POSTed request is answered as JSON or as an SSE stream, as
  :func:`~mcpexec.mcp_server.answers.answers_as_json` says for it.
"""

from __future__ import annotations

import json
from typing import Any

from mcp_types.jsonrpc import HEADER_MISMATCH
from starlette.types import ASGIApp, Receive, Scope, Send

from mcpexec.asgi_body import read_body, replay
from mcpexec.bearer import bearer_token
from mcpexec.mcp_server.answers import answering, answers_as_json

_TASK_METHODS = frozenset({"tasks/get", "tasks/update", "tasks/cancel"})


class McpHttpGuard:
    """``read_only_tools``: the tools whose calls may be answered as JSON (``readOnlyHint``)."""

    def __init__(
        self, app: ASGIApp, max_body_bytes: int, read_only_tools: frozenset[str] = frozenset()
    ) -> None:
        self._app = app
        self._max_body = max_body_bytes
        self._reads = read_only_tools

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = [_clean(name, value) for name, value in scope["headers"]]
        scope = {**scope, "headers": headers}
        if scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        body, more = await read_body(receive, self._max_body)
        message = None if more else _parse(body)
        if _header(headers, b"mcp-method") in _TASK_METHODS:
            name = _header(headers, b"mcp-name")
            task_id = _task_id(message) if name is not None else None
            if task_id is not None and name != task_id:
                await _refuse(send, (message or {}).get("id"))
                return
        with answering(answers_as_json(message, self._reads)):
            await self._app(scope, replay(body, more, receive), send)


def _clean(name: bytes, value: bytes) -> tuple[bytes, bytes]:
    value = value.strip(b" \t")
    if name == b"authorization":
        token = bearer_token(value.decode("latin-1"))
        if token is not None:
            value = f"Bearer {token}".encode("latin-1")
    return name, value


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def _parse(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):  # the SDK answers it with its parse error
        return None
    return value if isinstance(value, dict) else None


def _task_id(message: dict[str, Any] | None) -> str | None:
    params = (message or {}).get("params")
    task_id = params.get("taskId") if isinstance(params, dict) else None
    return task_id if isinstance(task_id, str) else None


async def _refuse(send: Send, request_id: Any) -> None:
    payload = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": request_id,
            "error": {
                "code": HEADER_MISMATCH,
                "message": "mcp-name header does not match the request body's 'taskId' parameter",
            },
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": payload})
