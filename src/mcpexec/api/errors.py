"""Every error leaves the API as ``{"error": {"code", "message", "details"}}``, code stable."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from mcpexec.errors import InvalidRequest, McpexecError
from mcpexec.views import wire_safe

log = logging.getLogger(__name__)


class SafeJSONResponse(JSONResponse):
    """JSON that always renders. Input is refused at the edge when it is not valid Unicode, but
    a value stored before that check (a label with a lone surrogate) must not turn every listing
    into a 500: such characters become U+FFFD in the answer."""

    def render(self, content: Any) -> bytes:
        try:
            # orjson writes the same compact UTF-8 JSON about four times faster than the stdlib
            # (a run view: 2 µs instead of 8). It refuses what it cannot write exactly (a lone
            # surrogate, an integer beyond 64 bits, a non-string key): such an answer takes the
            # stdlib path below.
            return orjson.dumps(content)
        except orjson.JSONEncodeError:
            pass
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            return super().render(wire_safe(content))


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _field(loc: tuple[Any, ...]) -> str:
    # ("body", "retry", "max_attempts") -> "retry.max_attempts"
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _message(error: dict[str, Any]) -> str:
    if error.get("type") == "json_invalid":
        # FastAPI says "JSON decode error" with the character position as the field.
        detail = (error.get("ctx") or {}).get("error", "")
        return f"request body is not valid JSON: {detail} (at character {error['loc'][-1]})"
    return str(error["msg"]).removeprefix("Value error, ")


def error_details(exc: McpexecError) -> dict[str, Any]:
    """The ``details`` of ``exc``'s answer: a 422 always lists ``errors`` (field, message),
    the same shape as a validation error's, so clients read one place."""
    details = dict(exc.details)
    if exc.http_status == 422 and "errors" not in details:
        field = str(details.get("field", "body"))
        details["errors"] = [{"field": field, "message": exc.message}]
    return details


def field_errors(errors: Sequence[Any]) -> list[dict[str, str]]:
    """pydantic's errors as ``{"field", "message"}`` (``retry.max_attempts``, not a loc)."""
    return [
        {
            "field": "body" if e.get("type") == "json_invalid" else _field(tuple(e["loc"])),
            "message": _message(e),
        }
        for e in errors
    ]


def invalid_request(errors: Sequence[Any]) -> InvalidRequest:
    """A validation failure as the API answers it: ``invalid_request``, the first field in the
    message, every field in ``details.errors``."""
    listed = field_errors(errors)
    first = listed[0] if listed else {"field": "body", "message": "invalid"}
    return InvalidRequest(f"{first['field']}: {first['message']}", errors=listed)


def install_error_handlers(api: FastAPI) -> None:
    @api.exception_handler(McpexecError)
    async def _domain(_: Request, exc: McpexecError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
        details = error_details(exc)
        if isinstance(details.get("retry_after_s"), int):  # 429 quota_exceeded
            headers = {"Retry-After": str(details["retry_after_s"])}
        if exc.http_status == 416 and isinstance(details.get("size"), int):
            headers = {"Content-Range": f"bytes */{details['size']}"}  # RFC 9110 15.5.17
        return SafeJSONResponse(
            error_body(exc.code, exc.message, details), exc.http_status, headers=headers
        )

    @api.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        invalid = invalid_request(exc.errors())
        return SafeJSONResponse(error_body(invalid.code, invalid.message, invalid.details), 422)

    @api.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        details: dict[str, Any] = {}
        if exc.status_code == 422:  # the body as a whole (not UTF-8): the validation shape
            details["errors"] = [{"field": "body", "message": str(exc.detail)}]
        # Keep the exception's headers: a 405 carries Allow.
        return SafeJSONResponse(
            error_body(code, str(exc.detail), details), exc.status_code, headers=exc.headers
        )

    @api.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return SafeJSONResponse(error_body("internal", "internal error; see the server log"), 500)
