"""Signals and the kill grace behave in the sandbox as without it (issue 8, items 5 and 6).

bwrap (and the pid 1 of the sandbox) reports a child's death by signal N as exit status 128+N;
the sandbox's status reporter carries the real wait status out. And SIGTERM on cancel reaches the
run's processes, not bwrap (whose death would SIGKILL the namespace before the grace).
"""

from __future__ import annotations

import asyncio
import signal

import pytest

from mcpexec.executor.sandbox import SandboxExecutor
from mcpexec.models import FailureKind

from .conftest import Sink, assert_clean, execute

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({"shell": "kill -9 $$"}, id="shell-kills-itself"),
        pytest.param({"command": ["sh", "-c", "kill -TERM $$"]}, id="command-sigterm"),
    ],
)
async def test_death_by_signal_is_reported_as_the_signal(
    sandbox: SandboxExecutor, spec: dict[str, object]
) -> None:
    result, _ = await execute(sandbox, spec)
    want = signal.SIGKILL if "-9" in str(spec) else signal.SIGTERM
    assert result.failure is not None
    assert result.failure.kind is FailureKind.SIGNAL, result
    assert result.signal == want
    assert result.exit_code is None
    await assert_clean(sandbox)


async def test_a_real_exit_137_stays_an_exit_code(sandbox: SandboxExecutor) -> None:
    result, _ = await execute(sandbox, {"shell": "exit 137"})
    assert result.failure is not None
    assert result.failure.kind is FailureKind.EXIT_CODE, result
    assert (result.exit_code, result.signal) == (137, None)
    result, _ = await execute(sandbox, {"shell": "exit 3"})
    assert (result.exit_code, result.signal) == (3, None)
    await assert_clean(sandbox)


async def test_signal_from_a_grandchild_shell_is_an_exit_code(sandbox: SandboxExecutor) -> None:
    """The main process is the shell; its child dying by a signal is the shell's 128+N exit."""
    result, _ = await execute(sandbox, {"shell": "sh -c 'kill -9 $$'; exit $?"})
    assert (result.exit_code, result.signal) == (137, None)


async def test_cancel_delivers_sigterm_and_honours_the_grace(sandbox: SandboxExecutor) -> None:
    """A run that traps TERM, prints and exits keeps that output on every cancel."""
    spec = {
        "shell": "trap 'echo cleaned up; exit 0' TERM; echo ready; while :; do sleep 0.05; done"
    }
    for i in range(8):
        cancel = asyncio.Event()
        sink = Sink()
        ready = sink.when_output(b"ready")
        task = asyncio.ensure_future(
            execute(sandbox, spec, cancel=cancel, sink=sink, kill_grace_s=10.0)
        )
        await asyncio.wait_for(ready.wait(), 30)
        cancel.set()
        result, _ = await task
        assert result.failure is not None
        assert result.failure.kind is FailureKind.CANCELLED
        assert "cleaned up" in sink.out, f"cancel {i}: {sink.out!r}"
    await assert_clean(sandbox)
