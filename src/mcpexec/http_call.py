"""Plain HTTP/1.1 request-response over the standard library, for the client.

The CLI makes one or two requests per command; importing httpx (with httpcore, h11 and, when
rich is installed, its command-line extra) costs about 250 ms, which is most of a command's
start-up. ``http.client`` is already loaded by Python's own modules and does what the client
needs: a JSON or raw body, query parameters, a timeout, the status, headers and body back.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit


class TransportFailure(Exception):
    """The request did not get an HTTP answer (refused, reset, timed out, bad URL)."""


class Response:
    """What came back: ``status_code``, ``headers`` (names in lower case), ``content``."""

    def __init__(self, status_code: int, headers: Mapping[str, str], content: bytes) -> None:
        self.status_code = status_code
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class HttpConnection:
    """Requests to one server (``base_url``), each on a fresh connection: a CLI command makes
    few, and a fresh connection cannot fail on a keep-alive the server already closed."""

    def __init__(self, base_url: str, headers: Mapping[str, str], timeout_s: float) -> None:
        parts = urlsplit(base_url)
        #: A URL that cannot be reached fails each request (as a refused connection does), so
        #: that the caller reports it where it reports every other transport failure.
        self._bad_url: str | None = None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            self._bad_url = f"not an http(s) URL: {base_url!r}"
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._headers = dict(headers)
        self._timeout_s = timeout_s

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        if self._bad_url is not None:
            raise TransportFailure(self._bad_url)
        target = self._prefix + path
        if params:
            pairs = [
                (key, _query_value(item))
                for key, value in params.items()
                for item in (value if isinstance(value, list | tuple) else [value])
            ]  # a list is the key repeated, as httpx sends it
            target += "?" + urlencode(pairs)
        sent = {**self._headers, **(headers or {})}
        body = content
        if json is not None:
            body = _dumps(json)
            sent.setdefault("Content-Type", "application/json")
        connection = self._connect(self._timeout_s if timeout is None else timeout)
        try:
            connection.request(method, target, body=body, headers=sent)
            answer = connection.getresponse()
            return Response(answer.status, dict(answer.getheaders()), answer.read())
        except (OSError, http.client.HTTPException) as exc:  # socket.timeout is an OSError
            raise TransportFailure(_describe(exc)) from exc
        finally:
            connection.close()

    def _connect(self, timeout_s: float) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout_s)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout_s)

    def close(self) -> None:
        """Nothing is kept open between requests."""


def _query_value(value: Any) -> str:
    if isinstance(value, bool):  # as httpx sends them: the API takes true/false
        return "true" if value else "false"
    return str(value)


def _dumps(value: Any) -> bytes:
    # ASCII with escapes, as httpx sends it: a lone surrogate reaches the server (which refuses
    # it with a 422 naming the field) instead of failing to encode here.
    return json.dumps(value, separators=(",", ":")).encode("ascii")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    return f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__
