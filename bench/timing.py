"""What the round-trip benchmarks share: sequential samples, a rate at a concurrency, percentiles.

Imported by the scripts beside it (run as ``.venv/bin/python bench/NAME.py``, which puts this
directory on the path).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable

import anyio


async def timed(call: Callable[[], Awaitable[object]], n: int, warmup: int = 50) -> list[float]:
    """``n`` sequential calls after ``min(warmup, n)`` unmeasured ones: milliseconds each."""
    for _ in range(min(warmup, n)):
        await call()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def rate(call: Callable[[], Awaitable[object]], concurrency: int, total: int) -> float:
    """Calls per second of ``total`` calls made by ``concurrency`` concurrent callers."""
    left = total

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return total / (time.perf_counter() - start)


def pct(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[int(q) - 1]


class BareHttp:
    """A minimal HTTP/1.1 keep-alive client (what curl sends, without its process start): a
    pool of connections, each request written in one ``send`` and its answer read by
    ``Content-Length`` or, for a streamed answer (an MCP 2025-11-25 SSE stream), by its chunks.
    Measures the server's latency without an HTTP library's own per-request cost (httpx's
    ``AsyncClient`` adds 1 to 3 ms of client CPU to every call on this machine)."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.idle: list[tuple[anyio.abc.SocketStream, bytearray]] = []
        self.last_headers: dict[str, str] = {}  # the last answer's, names in lower case

    async def post(
        self, path: str, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        head = f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}"
        return await self.request("POST", path, head, body)

    async def get(self, path: str) -> tuple[int, bytes]:
        return await self.request("GET", path, "", b"")

    async def request(self, method: str, path: str, head: str, body: bytes) -> tuple[int, bytes]:
        """One request on an idle connection (a new one when none is idle). A kept-alive
        connection the server closed while it sat idle (its keep-alive timeout) fails before
        any byte of an answer: the request is sent again on the next idle connection or a new
        one, as HTTP clients do (the server closes only idle connections: it never saw it)."""
        request = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.head}{head}\r\n".encode()
        while self.idle:
            conn, buffer = self.idle.pop()
            try:
                await conn.send(request + body)
                if not buffer:
                    buffer += await conn.receive()
                break
            except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
                await conn.aclose()
        else:
            conn, buffer = await anyio.connect_tcp(self.host, self.port), bytearray()
            await conn.send(request + body)
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            buffer += await conn.receive()
        lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
        rest = buffer[end + 4 :]
        status = int(lines[0].split(" ", 2)[1])
        self.last_headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:])
        }
        if "content-length" in self.last_headers:
            length = int(self.last_headers["content-length"])
            while len(rest) < length:
                rest += await conn.receive()
            answer, rest = bytes(rest[:length]), rest[length:]
        else:
            answer, rest = await self._chunks(conn, rest)
        self.idle.append((conn, rest))
        return status, answer

    @staticmethod
    async def _chunks(conn: anyio.abc.SocketStream, rest: bytearray) -> tuple[bytes, bytearray]:
        """A ``Transfer-Encoding: chunked`` body, up to its last (empty) chunk."""
        answer = bytearray()
        while True:
            while (end := rest.find(b"\r\n")) < 0:
                rest += await conn.receive()
            size = int(bytes(rest[:end]).split(b";", 1)[0], 16)
            while len(rest) < end + 2 + size + 2:
                rest += await conn.receive()
            answer += rest[end + 2 : end + 2 + size]
            rest = rest[end + 2 + size + 2 :]
            if size == 0:
                return bytes(answer), rest

    async def aclose(self) -> None:
        for conn, _ in self.idle:
            await conn.aclose()
        self.idle.clear()
