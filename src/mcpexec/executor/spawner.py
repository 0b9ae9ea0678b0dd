"""The server's side of the spawn helper (:mod:`mcpexec.executor.spawn_helper`).

:class:`Spawner` starts the helper once (``start``), sends it one request per attempt and hands
the supervisor a :class:`HelperTransport`, the part of ``asyncio.SubprocessTransport`` it uses
(pid, return code, the two pipe transports, ``close``), driving the same
``asyncio.SubprocessProtocol``. The event loop's whole share of a spawn is one ``sendmsg``,
two ``pipe2`` and the answer; the fork happens in a ~10 MB process instead of the ~90 MB server,
and the run's program is the one ``execve`` (the exec wrapper runs ``/bin/sh``, ``prlimit`` and
``setpriv`` before it).

Guarantees, as with the wrapper: the child is in its cgroups and under its rlimits and uid
before the run's first instruction; the tree is killed through the session and the cgroup leaf
(``ProcessTree``) by the supervisor, whoever forked it; when the server dies the helper gets EOF
(and ``PDEATHSIG``), SIGKILLs its children's sessions and exits, its children have ``PDEATHSIG``
against it, and the watchdog kills the cgroups as before.

If the helper cannot start, :meth:`Spawner.start` returns ``False`` and the executor uses the
exec wrapper. If it dies later, pending spawns fail (a ``spawn_error``), the attempts it had
started are seen exiting (``returncode`` ``None``: killed), and later spawns use the wrapper.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import errno
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from mcpexec.executor.limits import RLimit

HELPER = Path(__file__).with_name("spawn_helper.py")
MAX_MESSAGE = 256 * 1024  # spawn_helper.MAX_MESSAGE: larger requests use the exec wrapper
START_TIMEOUT_S = 10.0
log = logging.getLogger(__name__)


class SpawnFailed(OSError):
    """The helper could not set up or exec the child; ``where`` names the step."""

    def __init__(self, code: int, message: str, where: str) -> None:
        super().__init__(code, message)
        self.where = where


class _Pipe(asyncio.Protocol):
    def __init__(self, proto: asyncio.SubprocessProtocol, fd: int) -> None:
        self.proto, self.fd = proto, fd

    def data_received(self, data: bytes) -> None:
        self.proto.pipe_data_received(self.fd, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.proto.pipe_connection_lost(self.fd, exc)


class HelperTransport:
    """A child of the helper as the supervisor sees it."""

    def __init__(self, pid: int, proto: asyncio.SubprocessProtocol) -> None:
        self.pid = pid
        self.proto = proto
        self.returncode: int | None = None
        self.exited = False
        self.pipes: dict[int, asyncio.ReadTransport] = {}

    def get_pid(self) -> int:
        return self.pid

    def get_returncode(self) -> int | None:
        return self.returncode

    def get_pipe_transport(self, fd: int) -> asyncio.ReadTransport | None:
        return self.pipes.get(fd)

    def _exit(self, returncode: int | None) -> None:
        if not self.exited:
            self.exited = True
            self.returncode = returncode
            self.proto.process_exited()

    def close(self) -> None:
        for pipe in self.pipes.values():
            pipe.close()
        if not self.exited:  # as asyncio's transport does: a closed transport's process dies
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)


class Spawner:
    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self._ids = itertools.count(1)
        self._answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        # pid -> its transport; None from the helper's answer until spawn() registers it
        self._children: dict[int, HelperTransport | None] = {}
        self._early: dict[int, int] = {}  # exits that came before the registration
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buffer_bytes = MAX_MESSAGE

    @property
    def alive(self) -> bool:
        return self.sock is not None

    async def start(self) -> bool:
        """Start the helper and wait for its ``ready``; ``False`` (logged) if it cannot."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            for s in (ours, theirs):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, MAX_MESSAGE * 2)
            # -I -S: no site, no user paths, no environment variables: the stdlib only.
            self.proc = subprocess.Popen(  # noqa: ASYNC220 - once per executor, at start
                [sys.executable, "-I", "-S", str(HELPER), str(theirs.fileno()), str(os.getpid())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env={},
                cwd="/",
                start_new_session=True,  # signals to the server's group are not its
            )
        except OSError as exc:
            ours.close()
            log.warning("spawn helper not started (%s): using the exec wrapper", exc)
            return False
        finally:
            theirs.close()
        ours.setblocking(False)
        self.sock = ours
        self._loop = loop = asyncio.get_running_loop()
        ready: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._answers[0] = ready
        loop.add_reader(ours.fileno(), self._readable)
        try:
            async with asyncio.timeout(START_TIMEOUT_S):  # not wait_for: see mcpexec.aio
                await ready
        except (TimeoutError, ConnectionError) as exc:
            log.warning("spawn helper did not start (%s): using the exec wrapper", exc or "timeout")
            await self.close()
            return False
        return True

    def _readable(self) -> None:
        assert self.sock is not None
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._lost()
                return
            message = json.loads(data)
            if "exit" in message:
                pid = message["exit"]
                if pid in self._children:
                    child = self._children.pop(pid)
                    if child is None:
                        self._early[pid] = message["returncode"]
                    else:
                        child._exit(message["returncode"])
            elif "ready" in message:
                self._resolve(0, message)
            else:
                if "error" not in message:
                    self._children[message["pid"]] = None
                self._resolve(message["id"], message)

    def _resolve(self, key: int, message: dict[str, Any]) -> None:
        fut = self._answers.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(message)

    def _lost(self, closing: bool = False) -> None:
        """The helper died (or is being closed): fail what waits, end what it had started."""
        if self.sock is not None:
            if self._loop is not None:
                self._loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
            if not closing:
                log.error("spawn helper connection lost: using the exec wrapper from now on")
        for fut in self._answers.values():
            if not fut.done():
                fut.set_exception(ConnectionError("spawn helper gone"))
        self._answers.clear()
        children, self._children = self._children, {}
        self._early.clear()
        for child in children.values():
            if child is not None:
                child._exit(None)  # PDEATHSIG killed it with the helper

    def _kill_unclaimed(self, fut: asyncio.Future[dict[str, Any]]) -> None:
        if fut.cancelled() or fut.exception() is not None or "error" in fut.result():
            return
        pid = fut.result()["pid"]
        self._children.pop(pid, None)
        self._early.pop(pid, None)
        for kill in (os.killpg, os.kill):
            with contextlib.suppress(OSError):
                kill(pid, signal.SIGKILL)

    def fits(self, argv: Sequence[str], env: dict[str, str]) -> bool:
        size = sum(len(a) + 8 for a in argv) + sum(len(k) + len(v) + 8 for k, v in env.items())
        return size < self._buffer_bytes // 2

    async def spawn(
        self,
        proto: asyncio.SubprocessProtocol,
        *,
        argv: Sequence[str],
        executable: str,
        env: dict[str, str],
        cwd: Path,
        pass_fds: Sequence[int],
        join_fds: Sequence[int],
        rlimits: Sequence[RLimit],
        drop_to: tuple[int, int] | None,
    ) -> HelperTransport:
        """Fork + exec one child (stdin ``/dev/null``, stdout/stderr piped to ``proto``).
        Raises :class:`SpawnFailed` when the child's set-up or exec failed, ``ConnectionError``
        when the helper is gone."""
        if self.sock is None or self._loop is None:
            raise ConnectionError("spawn helper gone")
        loop = self._loop
        request_id = next(self._ids)
        request = {
            "id": request_id,
            "argv": list(argv),
            "executable": executable,
            "env": env,
            "cwd": str(cwd),
            "pass_fds": list(pass_fds),
            "rlimits": [list(r) for r in rlimits],
            "drop_to": list(drop_to) if drop_to is not None else None,
        }
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            answer_fut = self._send(request, [devnull, out_w, err_w, *pass_fds, *join_fds])
        except BaseException:
            os.close(out_r)
            os.close(err_r)
            raise
        finally:
            for fd in (devnull, out_w, err_w):
                os.close(fd)
        try:
            answer = await asyncio.shield(answer_fut)  # cancelled, we still want the answer
        except BaseException:
            os.close(out_r)
            os.close(err_r)
            if not answer_fut.done():  # cancelled: the child may be forked still; kill it then
                answer_fut.add_done_callback(self._kill_unclaimed)
            raise
        if "error" in answer:
            os.close(out_r)
            os.close(err_r)
            raise SpawnFailed(answer.get("errno") or 0, answer["error"], answer.get("where", ""))
        child = HelperTransport(answer["pid"], proto)
        if child.pid in self._early:
            child._exit(self._early.pop(child.pid))
        elif self.alive:
            self._children[child.pid] = child
        else:  # the helper died since its answer: so did the child (PDEATHSIG)
            child._exit(None)
        for fd, r in ((1, out_r), (2, err_r)):
            pipe, _ = await loop.connect_read_pipe(
                lambda fd=fd: _Pipe(proto, fd),  # type: ignore[misc]
                open(r, "rb", buffering=0),  # noqa: SIM115, ASYNC230 - a pipe; the transport owns it
            )
            child.pipes[fd] = pipe
        return child

    def _send(self, request: dict[str, Any], fds: list[int]) -> asyncio.Future[dict[str, Any]]:
        """Send one request with ``fds``; the future of its answer."""
        assert self.sock is not None
        assert self._loop is not None
        request_id = request["id"]
        answer: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        self._answers[request_id] = answer
        try:
            self.sock.sendmsg(
                [_encode(request)],
                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())],
            )
        except BlockingIOError:  # the helper is not reading: it is stuck, not slow
            self._answers.pop(request_id, None)
            raise ConnectionError("spawn helper not reading") from None
        except OSError as exc:
            self._answers.pop(request_id, None)
            if exc.errno != errno.EMSGSIZE:  # too large: this one spawn uses the wrapper
                self._lost()
            raise ConnectionError(f"spawn helper: {exc}") from exc
        return answer

    async def close(self) -> None:
        """EOF to the helper, which kills what it still has and exits; reap it."""
        self._lost(closing=True)
        proc, self.proc = self.proc, None
        if proc is not None:
            try:
                await asyncio.to_thread(proc.wait, 5)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait, 5)


def _encode(request: dict[str, Any]) -> bytes:
    """The request as JSON: orjson (the environment is most of it; ~10x the stdlib's speed), or,
    for a string orjson refuses (a non-UTF-8 environment value arrives as lone surrogates from
    ``os.environ``), the stdlib's ``\\udcxx`` escapes, which the helper reads back the same."""
    try:
        return orjson.dumps(request)
    except orjson.JSONEncodeError:
        return json.dumps(request).encode()
