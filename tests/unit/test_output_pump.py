"""OutputPump.finish: what is left is delivered to the sink, or handed back in order."""

from __future__ import annotations

import asyncio

import pytest

from mcpexec.executor.output import OutputPump, omitted_marker
from mcpexec.models import Progress, Stream

pytestmark = pytest.mark.anyio


class SlowSink:
    """Records deliveries; the first one waits until released (a flush under way)."""

    def __init__(self) -> None:
        self.got: list[tuple[Stream, bytes]] = []
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def output(self, stream: Stream, data: bytes) -> None:
        if not self.got:
            self.entered.set()
            await self.release.wait()
        self.got.append((stream, data))

    async def progress(self, progress: Progress) -> None:
        raise AssertionError("no progress here")

    async def artifact(self, name: str, file: object, size: int) -> None:
        raise AssertionError("no artifacts here")


@pytest.mark.parametrize("deliver", [True, False])
async def test_finish_keeps_the_order_with_a_flush_under_way(deliver: bool) -> None:
    sink = SlowSink()
    pump = OutputPump(sink, cap=10, tail_bytes=4, flush_bytes=3, flush_interval=5.0)
    pump.start()
    pump.feed(Stream.STDOUT, b"abc")  # a full batch: flushed at once, held in the sink
    await asyncio.wait_for(sink.entered.wait(), 5)
    pump.feed(Stream.STDOUT, b"de")
    pump.feed(Stream.STDERR, b"e1")
    pump.feed(Stream.STDOUT, b"fghijklmnop")  # past the cap of 10: "fghij" kept, "klmnop" over
    finishing = asyncio.ensure_future(pump.finish(deliver=deliver))
    await asyncio.sleep(0)
    assert not finishing.done()  # it waits for the flush under way
    sink.release.set()
    tail = await asyncio.wait_for(finishing, 5)
    assert sink.got[0] == (Stream.STDOUT, b"abc")
    if deliver:
        assert tail == ()
    else:
        assert tail  # the rest is handed back, not delivered after finish() returned
    everything = [*sink.got, *tail]
    # Order holds per stream (the flush under way took stderr's bytes on its way).
    assert b"".join(d for s, d in everything if s == Stream.STDOUT) == (
        b"abcdefghij" + omitted_marker(2) + b"mnop"
    )
    assert b"".join(d for s, d in everything if s == Stream.STDERR) == b"e1"
    assert everything[-1] == (Stream.STDOUT, omitted_marker(2) + b"mnop")  # the marker last
