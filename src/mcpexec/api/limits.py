"""Request body cap: a pure ASGI middleware, so oversized bodies are refused before parsing."""

from __future__ import annotations

import codecs
import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcpexec.api.errors import error_body
from mcpexec.asgi_body import read_body, replay


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` past the cap. An HTTPException because FastAPI turns any other
    exception while reading the body into a 400, and re-raises this one (then answered 413)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body exceeds {max_bytes} bytes")


class BodyNotUtf8(HTTPException):
    """JSON is UTF-8; FastAPI would answer a 400 "error parsing the body" for other bytes."""

    def __init__(self, position: int) -> None:
        super().__init__(
            422, f"body: request body is not valid JSON: not UTF-8 (at byte {position})"
        )


class BodyLimit:
    """``read_first``: read the whole (capped) body before calling ``app`` and replay it, for an
    app whose own error handling would answer a ``BodyTooLarge`` raised mid-read in its own
    format (the MCP app: plain text); one that reads the whole body anyway loses nothing."""

    def __init__(self, app: ASGIApp, max_bytes: int, *, read_first: bool = False) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_first = read_first

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        if self.read_first:
            body, more = await read_body(receive, self.max_bytes)
            if more or len(body) > self.max_bytes:
                await self._refuse(send)
                return
            await self.app(scope, replay(body, False, receive), send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        message = f"request body exceeds {self.max_bytes} bytes"
        await _send_json(send, 413, error_body("payload_too_large", message))


#: Content types a JSON body may arrive under: curl -d sends form-urlencoded, some clients none.
_TAKEN_AS_JSON = (b"", b"application/x-www-form-urlencoded", b"text/plain")


_YAML = frozenset({b"application/yaml", b"application/x-yaml", b"text/yaml"})


class JsonBody:
    """Take a body without a JSON content type as JSON (``curl -d '{...}'`` says it is a form);
    refuse other types with 415. Only for ``/api/`` requests (and seed 001's ``/execute``)
    that carry a body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in ("POST", "PUT", "PATCH")
            or not (scope["path"].startswith("/api/") or scope["path"] == "/execute")
        ):
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
        given = dict(scope["headers"]).get(b"content-type", b"")
        media = given.split(b";", 1)[0].strip().lower()
        # Task definitions may also be sent as YAML (PUT /api/v1/tasks/{name}).
        if media in _YAML or media == b"application/json" or media.endswith(b"+json"):
            await self.app(scope, self._utf8(receive), send)
            return
        if media not in _TAKEN_AS_JSON:
            kind = media.decode("latin-1")
            message = f"send the body as JSON (Content-Type: application/json), not {kind!r}"
            await _send_json(send, 415, error_body("unsupported_media_type", message))
            return
        headers.append((b"content-type", b"application/json"))
        await self.app({**scope, "headers": headers}, self._utf8(receive), send)

    @staticmethod
    def _utf8(receive: Receive) -> Receive:
        decoder = codecs.getincrementaldecoder("utf-8")()
        seen = 0

        async def checked() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                try:
                    decoder.decode(chunk, final=not message.get("more_body", False))
                except UnicodeDecodeError as exc:
                    raise BodyNotUtf8(seen + exc.start) from None
                seen += len(chunk)
            return message

        return checked


async def _send_json(send: Send, status: int, body: dict[str, object]) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": data})
