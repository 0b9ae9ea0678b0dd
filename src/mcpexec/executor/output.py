"""The output pump: stdout/stderr bytes in (pushed by the pipe protocol), batched sink writes out.

Three promises:

* **Batching.** A chatty run printing one short line at a time must not cost one store write per
  line, so bytes are held until ``flush_bytes`` have accumulated or ``flush_interval`` has passed
  since the first unflushed byte.
* **A cap per stream that never stops the reading.** Past ``cap`` bytes the pump keeps consuming
  (a pipe nobody reads fills, the process blocks in ``write`` and never exits), remembers only the
  last ``tail_bytes`` and, at the end, emits ``\\n[mcpexec: N bytes omitted]\\n`` plus that tail.
* **Bounded memory whatever the run prints.** Unflushed bytes are bounded by backpressure: when
  the sink is slower than the run and more than ``high_water`` bytes wait, the pump asks the
  protocol to pause that pipe until the flusher catches up. Pausing is safe here because process
  exit is observed by the child watcher, never through the pipes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from mcpexec.aio import wait_event
from mcpexec.executor.base import ExecSink
from mcpexec.executor.redact import Redactor
from mcpexec.models import Stream

FLUSH_BYTES = 64 * 1024
FLUSH_INTERVAL_S = 0.05
TAIL_BYTES = 64 * 1024
HIGH_WATER = 1024 * 1024


def omitted_marker(count: int) -> bytes:
    return f"\n[mcpexec: {count} bytes omitted]\n".encode()


class StreamCapture:
    """One stream's accounting: what may still be delivered, and the tail past the cap."""

    def __init__(self, cap: int, tail_max: int) -> None:
        self.cap = cap
        self.tail_max = tail_max
        self.pending = bytearray()
        self.accepted = 0  # bytes within the cap (delivered or pending)
        self.over = 0  # bytes past the cap (all counted, only the tail kept)
        self.tail = bytearray()

    @property
    def truncated(self) -> bool:
        return self.over > 0

    def feed(self, data: bytes) -> None:
        room = self.cap - self.accepted
        if room > 0:
            head = data[:room]
            self.pending += head
            self.accepted += len(head)
            data = data[room:]
        if data:
            self.over += len(data)
            self.tail += data
            excess = len(self.tail) - self.tail_max
            if excess > 0:
                del self.tail[:excess]

    def take(self) -> bytes:
        data = bytes(self.pending)
        self.pending.clear()
        return data

    def closing(self) -> bytes:
        """The marker and tail emitted once, at the end, if the cap was exceeded."""
        if not self.over:
            return b""
        return omitted_marker(self.over - len(self.tail)) + bytes(self.tail)


Pauser = Callable[[Stream, bool], None]


class OutputPump:
    def __init__(
        self,
        sink: ExecSink,
        cap: int,
        *,
        tail_bytes: int = TAIL_BYTES,
        flush_bytes: int = FLUSH_BYTES,
        flush_interval: float = FLUSH_INTERVAL_S,
        high_water: int = HIGH_WATER,
        pauser: Pauser | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self._sink = sink
        # Secrets are replaced before anything is counted, kept or delivered.
        self._redactor = redactor if redactor is not None and redactor.active else None
        tail = min(tail_bytes, cap)
        self._streams = {s: StreamCapture(cap, tail) for s in (Stream.STDOUT, Stream.STDERR)}
        self._flush_bytes = flush_bytes
        self._flush_interval = flush_interval
        self._high_water = high_water
        self._low_water = high_water // 4
        self.pauser = pauser
        self._paused: set[Stream] = set()
        self._any = asyncio.Event()  # something is pending
        self._full = asyncio.Event()  # enough is pending to flush now
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    @property
    def truncated(self) -> bool:
        return any(c.truncated for c in self._streams.values())

    def bytes_seen(self, stream: Stream) -> int:
        c = self._streams[stream]
        return c.accepted + c.over

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def feed(self, stream: Stream, data: bytes) -> None:
        """Called synchronously from the pipe protocol for every chunk read."""
        if self._redactor is not None:
            data = self._redactor.feed(stream, data)
        self._capture(stream, data)

    def _capture(self, stream: Stream, data: bytes) -> None:
        capture = self._streams[stream]
        capture.feed(data)
        if not capture.pending:
            return  # all of it went to the tail: nothing to flush
        self._any.set()
        if len(capture.pending) >= self._flush_bytes:
            self._full.set()
        if len(capture.pending) >= self._high_water and stream not in self._paused:
            self._paused.add(stream)
            if self.pauser is not None:
                self.pauser(stream, True)

    async def _run(self) -> None:
        while True:
            await self._any.wait()
            if not self._closed:
                # Give a chatty run a moment to fill the batch, unless it already did.
                await wait_event(self._full, self._flush_interval)
            if self._closed:
                return  # finish() takes what is left
            self._any.clear()
            self._full.clear()
            await self._flush()

    async def _flush(self) -> None:
        for stream, capture in self._streams.items():
            data = capture.take()
            if data:
                await self._sink.output(stream, data)
            if stream in self._paused and len(capture.pending) <= self._low_water:
                self._paused.discard(stream)
                if self.pauser is not None:
                    self.pauser(stream, False)

    async def finish(self, *, deliver: bool = True) -> tuple[tuple[Stream, bytes], ...]:
        """What is left, then the omitted-bytes markers and tails: delivered to the sink, or
        with ``deliver=False`` returned in that order (the caller stores them). Call once,
        after the pipes are closed (or abandoned)."""
        if self._redactor is not None:
            for stream in self._streams:
                self._capture(stream, self._redactor.flush(stream))
        self._closed = True
        self._any.set()
        self._full.set()
        if self._task is not None:
            await self._task  # a flush under way ends first: the order of the bytes holds
        left = [(stream, capture.take()) for stream, capture in self._streams.items()]
        left += [(stream, capture.closing()) for stream, capture in self._streams.items()]
        chunks = tuple((stream, data) for stream, data in left if data)
        if not deliver:
            return chunks
        for stream, data in chunks:
            await self._sink.output(stream, data)
        return ()

    def abort(self) -> None:
        """Stop the flusher without delivering more (the caller is being cancelled)."""
        self._closed = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
