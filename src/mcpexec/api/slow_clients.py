"""Time out slow clients: uvicorn has a keep-alive timeout but none for reading a request, so a
client that sends half a request line holds its connection (and a slot) for ever.

``timed_protocol`` subclasses uvicorn's httptools protocol: from the first byte of a request
(and from the connection's start) its headers must arrive within ``header_timeout_s``, then its
body within ``body_timeout_s``; otherwise the connection is closed. A response being streamed
(SSE, long-poll) is not limited: the request was complete before it started.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _TimedProtocol(HttpToolsProtocol):
    header_timeout_s = 10.0
    body_timeout_s = 60.0
    _timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm(self.header_timeout_s)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.body_timeout_s)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if not self.transport.is_closing():
            self.transport.close()


def timed_protocol(header_timeout_s: float, body_timeout_s: float) -> type[HttpToolsProtocol]:
    """The protocol class to give ``uvicorn.Config(http=...)``."""
    return type(
        "TimedHttpProtocol",
        (_TimedProtocol,),
        {"header_timeout_s": header_timeout_s, "body_timeout_s": body_timeout_s},
    )
