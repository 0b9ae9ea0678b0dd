"""A scripted executor for unit tests of the domain (worker, retries, cancellation)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from mcpexec.executor.base import ExecRequest, ExecResult, ExecSink, Executor
from mcpexec.models import Failure, FailureKind, Stream

Behaviour = Callable[[ExecRequest, ExecSink, asyncio.Event], Awaitable[ExecResult]]


async def echo_behaviour(request: ExecRequest, sink: ExecSink, cancel: asyncio.Event) -> ExecResult:
    """``command: ["echo", ...]`` prints, ``["exit", N]`` fails with N, ``["block"]`` waits for
    cancellation; anything else succeeds silently."""
    argv = request.spec.command or []
    if argv[:1] == ["echo"]:
        await sink.output(Stream.STDOUT, (" ".join(argv[1:]) + "\n").encode())
    elif argv[:1] == ["exit"]:
        code = int(argv[1])
        failure = Failure(kind=FailureKind.EXIT_CODE, message=f"exited with {code}")
        return ExecResult(succeeded=False, exit_code=code, failure=failure)
    elif argv[:1] == ["block"]:
        await cancel.wait()
        failure = Failure(kind=FailureKind.CANCELLED, message="cancelled")
        return ExecResult(succeeded=False, signal=15, failure=failure)
    return ExecResult(succeeded=True, exit_code=0)


class FakeExecutor(Executor):
    isolation = "fake"

    def __init__(self, behaviour: Behaviour = echo_behaviour) -> None:
        self.behaviour = behaviour
        self.executed: list[ExecRequest] = []

    async def execute(
        self, request: ExecRequest, sink: ExecSink, cancel: asyncio.Event
    ) -> ExecResult:
        self.executed.append(request)
        return await self.behaviour(request, sink, cancel)
