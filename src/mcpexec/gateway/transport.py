"""The stdio transport of a downstream MCP server, owned by the gateway (not the SDK's).

Why our own: the gateway needs what the SDK's ``stdio_client`` hides — the pid (health), the
moment the process dies (in-flight calls must fail *at once*, even when a grandchild still
holds stdout open so no EOF ever comes), a bound on one message (a flood must not eat memory),
the tail of stderr (the last error), and a kill of the whole process *group* on close, also
when the leader already exited and children that ignore stdin close linger.

The server starts in its own session (``setsid``: pgid == pid). Closing: stdin closed, a short
grace, SIGTERM to the group, ``kill_grace_s``, SIGKILL to the group — always, so a child that
ignored SIGTERM dies too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp import types
from mcp.shared.message import SessionMessage

_STDERR_TAIL = 4096
_CHUNK = 65536


@dataclass
class ProcessInfo:
    """What the gateway knows of one server process."""

    pid: int | None = None
    returncode: int | None = None
    stderr_tail: bytes = b""
    lost_reason: str | None = None  # why the transport gave up on the process
    exited: anyio.Event = field(default_factory=anyio.Event)


def _kill_group(pgid: int, sig: signal.Signals) -> bool:
    """Signal the group; False when no member is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member changed uid (setuid helper): nothing more we can do
        return False
    return True


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


async def _wait_group_gone(pgid: int, seconds: float) -> bool:
    # No event tells us when the last member of a group exits (members are not our children),
    # so this is a bounded poll: every 10 ms up to `seconds`.
    with anyio.move_on_after(seconds):
        while group_alive(pgid):  # noqa: ASYNC110 - no event exists for this
            await anyio.sleep(0.01)
        return True
    return not group_alive(pgid)


@asynccontextmanager
async def stdio_transport(
    argv: Sequence[str],
    env: dict[str, str],
    cwd: str | None,
    info: ProcessInfo,
    *,
    max_message_bytes: int = 64 * 1024 * 1024,
    kill_grace_s: float = 2.0,
    pass_fds: Sequence[int] = (),
) -> AsyncIterator[
    tuple[
        MemoryObjectReceiveStream[SessionMessage | Exception],
        MemoryObjectSendStream[SessionMessage],
    ]
]:
    """Spawn ``argv`` and yield the (read, write) message streams of an MCP ``Client``."""
    process = await anyio.open_process(
        list(argv),
        env=env,
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        pass_fds=pass_fds,
    )
    pgid = info.pid = process.pid
    read_send, read_recv = anyio.create_memory_object_stream[SessionMessage | Exception](16)
    write_send, write_recv = anyio.create_memory_object_stream[SessionMessage](16)

    async def give_up(reason: str) -> None:
        if info.lost_reason is None:
            info.lost_reason = reason
        await read_send.aclose()  # the dispatcher fails every pending request now

    async def stdout_reader() -> None:
        assert process.stdout is not None
        buffer = b""
        with contextlib.suppress(anyio.EndOfStream, anyio.ClosedResourceError, OSError):
            async for chunk in process.stdout:
                buffer += chunk
                while (end := buffer.find(b"\n")) >= 0:
                    line, buffer = buffer[:end], buffer[end + 1 :]
                    if line.strip():
                        await read_send.send(_parse(line))
                if len(buffer) > max_message_bytes:
                    await give_up(f"sent a message larger than {max_message_bytes} bytes")
                    _kill_group(pgid, signal.SIGKILL)
                    return
        await give_up("closed its stdout")

    async def stdin_writer() -> None:
        assert process.stdin is not None
        try:
            async for message in write_recv:
                data = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                await process.stdin.send(data.encode() + b"\n")
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            await give_up("closed its stdin")

    async def stderr_reader() -> None:
        assert process.stderr is not None
        with contextlib.suppress(anyio.EndOfStream, anyio.ClosedResourceError, OSError):
            async for chunk in process.stderr:
                info.stderr_tail = (info.stderr_tail + chunk)[-_STDERR_TAIL:]

    async def watcher() -> None:
        info.returncode = await _wait_exit(process)
        info.exited.set()
        # The leader is gone: whatever it left behind in its group goes too, and the session
        # is over even if a lingering child keeps stdout open (no EOF would ever come).
        _kill_group(pgid, signal.SIGKILL)
        await give_up(f"exited with status {info.returncode}")

    async with anyio.create_task_group() as tg:
        for task in (stdout_reader, stdin_writer, stderr_reader, watcher):
            tg.start_soon(task)
        try:
            yield read_recv, write_send
        finally:
            with anyio.CancelScope(shield=True):
                await _stop(process, pgid, info, kill_grace_s)
                for stream in (read_send, write_send):
                    await stream.aclose()
            tg.cancel_scope.cancel()


async def _stop(
    process: anyio.abc.Process, pgid: int, info: ProcessInfo, kill_grace_s: float
) -> None:
    if process.stdin is not None:
        with contextlib.suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            await process.stdin.aclose()
    # A well-behaved server exits when its stdin closes (the MCP spec's first step).
    with anyio.move_on_after(min(0.5, kill_grace_s)):
        await info.exited.wait()
    if _kill_group(pgid, signal.SIGTERM):
        await _wait_group_gone(pgid, kill_grace_s)
    _kill_group(pgid, signal.SIGKILL)  # always: members that ignored SIGTERM
    with anyio.move_on_after(2.0):
        await info.exited.wait()
    await _wait_group_gone(pgid, 2.0)
    for pipe in (process.stdout, process.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                await pipe.aclose()
    with contextlib.suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
        await process.aclose()


async def _wait_exit(process: anyio.abc.Process) -> int | None:
    """The leader's exit, as an event (a pidfd), not ``process.wait()``: asyncio's also waits
    for the pipes' EOF, which a child that inherited stdout delays forever."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # pre-5.3 kernels: poll the asyncio watcher's returncode
        while process.returncode is None:  # noqa: ASYNC110 - no pidfd: nothing to await
            await anyio.sleep(0.05)
        return process.returncode
    try:
        await anyio.wait_readable(pidfd)
    finally:
        os.close(pidfd)
    # asyncio's child watcher reaps the zombie just after; its status follows within moments.
    with anyio.move_on_after(2.0):
        while process.returncode is None:  # noqa: ASYNC110 - the watcher sets no event
            await anyio.sleep(0.005)
    return process.returncode


def _parse(line: bytes) -> SessionMessage | Exception:
    try:
        return SessionMessage(types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError as exc:
        return exc
