"""The last progress value arrives exactly once, even when the attempt ends while a forward is in
flight (issue 8's progress race: the follower was cancelled mid-write, the final poll then saw
nothing new, and ``progress`` stayed ``None``)."""

from __future__ import annotations

import asyncio

from mcpexec.executor.supervisor import ProgressForwarder
from mcpexec.models import Progress

P1 = Progress(value=0.5, message="half")


class OneValueTail:
    """A progress file holding one line: the first poll returns it, later polls nothing new."""

    def __init__(self) -> None:
        self.polled = asyncio.Event()
        self.given = False

    def poll(self, final: bool = False) -> Progress | None:
        self.polled.set()
        if self.given:
            return None
        self.given = True
        return P1


def test_finish_while_a_forward_is_in_flight_delivers_it_once() -> None:
    async def main() -> list[Progress]:
        seen: list[Progress] = []
        in_flight, release = asyncio.Event(), asyncio.Event()

        async def forward(progress: Progress) -> None:
            in_flight.set()
            await release.wait()  # a store write that takes a while
            seen.append(progress)

        forwarder = ProgressForwarder(OneValueTail(), forward)  # type: ignore[arg-type]
        await asyncio.wait_for(in_flight.wait(), 10)
        finishing = asyncio.ensure_future(forwarder.finish())  # the attempt ends now
        await asyncio.sleep(0)  # let finish() start while the forward is still blocked
        release.set()
        await asyncio.wait_for(finishing, 10)
        return seen

    assert asyncio.run(main()) == [P1]


def test_finish_before_any_poll_forwards_the_final_value() -> None:
    async def main() -> list[Progress]:
        seen: list[Progress] = []

        async def forward(progress: Progress) -> None:
            seen.append(progress)

        forwarder = ProgressForwarder(OneValueTail(), forward)  # type: ignore[arg-type]
        await forwarder.finish()
        return seen

    assert asyncio.run(main()) == [P1]
