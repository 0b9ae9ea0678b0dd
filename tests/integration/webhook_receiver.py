"""A real local HTTP receiver for webhook tests (stdlib ``http.server`` in a thread): records
every POST (headers, body) and answers 200 (or the status it is told)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    port: int
    status: int = 200
    received: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver._cond:
                    receiver.received.append(Received(self.path, dict(self.headers), body))
                    receiver._cond.notify_all()
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)

    def wait_until(
        self, predicate: Callable[[list[Received]], bool], timeout_s: float = 30.0
    ) -> list[Received]:
        """Block (bounded) until ``predicate(requests so far)``; the requests so far."""
        with self._cond:
            self._cond.wait_for(lambda: predicate(self.received), timeout_s)
            return list(self.received)

    def wait_for(self, count: int, timeout_s: float = 30.0) -> list[Received]:
        """Block (bounded) until ``count`` requests came; the requests so far."""
        with self._cond:
            self._cond.wait_for(lambda: len(self.received) >= count, timeout_s)
            return list(self.received)


def free_port() -> int:
    """A port nothing listens on now (the 'receiver is down' case)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
