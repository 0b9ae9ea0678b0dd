"""The spawn helper: a small single-threaded process, started once by the executor, that forks
and execs each attempt's first process on request (a zygote). Standard library only: it is run
as a script (``python -I -S spawn_helper.py FD``) and never imports mcpexec, so it stays small
(a fork of it costs a fraction of a fork of the server) and holds nothing of the server's.

Requests come over a ``SOCK_SEQPACKET`` socket (``FD``), one JSON message each, with the
descriptors in ``SCM_RIGHTS``: stdin, stdout, stderr, the ``pass_fds`` (in order) and the
``cgroup.procs`` descriptors to join. The child, before its one ``execve``:

1. restores the signal dispositions Python changed (SIGPIPE, SIGXFSZ, ...), ``setsid`` (the
   executor kills the session / cgroup leaf), ``chdir``;
2. moves the received descriptors to 0, 1, 2 and the ``pass_fds`` numbers the request names;
3. joins the cgroups (writes ``0`` to each ``cgroup.procs``: every process the run forks is in);
4. sets the rlimits, drops to ``drop_to`` (uid, gid; no supplementary groups);
5. sets ``PDEATHSIG`` (SIGKILL when the helper dies: after the uid change, which clears it), then
   checks that the helper is still its parent (it may have died before the prctl);
6. closes every other descriptor, ``execve``.

A failure in 1-6 is reported through a close-on-exec pipe (``where:errno``) and the child exits
127; the helper answers ``{"id", "pid"}`` or ``{"id", "error", "errno", "where"}``. Exits are
reported as ``{"exit": pid, "returncode": rc}`` (``-N`` for signal N) once reaped, always after the
spawn's own answer. On EOF (the server closed the socket or died) the helper SIGKILLs the sessions
of its live children and exits; it also has ``PDEATHSIG`` against the server itself.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import errno
import fcntl
import json
import os
import resource
import selectors
import signal
import socket
import sys

MAX_MESSAGE = 256 * 1024
MAX_FDS = 64
PR_SET_PDEATHSIG = 1
#: Dispositions the helper (or the server's Python before it) changed, which exec would keep.
_RESTORED = (
    signal.SIGPIPE,
    signal.SIGXFSZ,
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGCHLD,
)
# dlopen(NULL): libc's symbols are already in the process. ``ctypes.util.find_library`` would
# run ``ldconfig -p`` through ``subprocess`` and leave the helper 4 MB larger, and every fork of
# a larger helper costs its child more: 1.8 instead of 1.1 ms of CPU and 270 instead of 125
# page faults before the run's program (measured, docs/benchmarks.md 2026-12-07).
_LIBC = ctypes.CDLL(None, use_errno=True)


def _pdeathsig() -> None:
    if _LIBC.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")


def _child(req: dict, fds: list[int], err_w: int, helper: int) -> None:  # type: ignore[type-arg]
    """In the forked child: never returns."""
    where = "setup"
    try:
        # What the server's Python changed and exec would keep: ignored SIGPIPE/SIGXFSZ, our
        # SIGINT and SIGCHLD dispositions, the wakeup descriptor.
        signal.set_wakeup_fd(-1)
        for sig in _RESTORED:
            signal.signal(sig, signal.SIG_DFL)
        os.setsid()
        where = "chdir"  # as the server's user, as subprocess does before the wrapper runs
        os.chdir(req["cwd"])
        where = "fds"
        targets = [0, 1, 2, *req["pass_fds"]]
        # Copies above every number in play first, so that no dup2 overwrites a source.
        floor = max([*targets, *fds, err_w]) + 1
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor) for fd in fds]
        err_w = fcntl.fcntl(err_w, fcntl.F_DUPFD_CLOEXEC, floor)
        for src, dst in zip(high[: len(targets)], targets, strict=True):
            os.dup2(src, dst, inheritable=True)
        where = "cgroup"
        for fd in high[len(targets) :]:
            os.write(fd, b"0")
        where = "rlimit"
        for res, soft, hard in req["rlimits"]:
            resource.setrlimit(res, (soft, hard))
        if req.get("drop_to"):
            where = "uid"
            uid, gid = req["drop_to"]
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
        where = "pdeathsig"
        _pdeathsig()
        if os.getppid() != helper:  # the helper (and the server) died before the prctl
            os._exit(127)
        low = 0
        for fd in sorted({*targets, err_w}):  # err_w is close-on-exec: it tells exec happened
            if fd > low:
                os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, 1 << 20)
        where = "exec"
        os.execve(req["executable"], req["argv"], req["env"])  # noqa: S606 - argv, no shell
    except OSError as exc:
        try:
            os.write(err_w, f"{where}:{exc.errno or 0}".encode())
        finally:
            os._exit(127)
    except BaseException:
        os._exit(127)


class Helper:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.children: set[int] = set()
        self.pid = os.getpid()

    def send(self, message: dict) -> None:  # type: ignore[type-arg]
        self.sock.sendall(json.dumps(message).encode())

    def spawn(self, req: dict, fds: list[int]) -> None:  # type: ignore[type-arg]
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        try:
            pid = os.fork()
            if pid == 0:
                os.close(err_r)
                _child(req, fds, err_w, self.pid)
            os.close(err_w)
            err_w = -1
            self.children.add(pid)
            report = b""
            while True:  # EOF: the exec happened (or the child died before writing)
                try:
                    chunk = os.read(err_r, 256)
                except InterruptedError:
                    continue
                if not chunk:
                    break
                report += chunk
        finally:
            os.close(err_r)
            if err_w >= 0:
                os.close(err_w)
            for fd in fds:
                os.close(fd)
        if report:
            where, _, num = report.decode(errors="replace").partition(":")
            code = int(num) if num.isdigit() else 0
            self.send(
                {
                    "id": req["id"],
                    "error": os.strerror(code) if code else "child setup failed",
                    "errno": code,
                    "where": where,
                    "pid": pid,
                }
            )
        else:
            self.send({"id": req["id"], "pid": pid})

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self.send({"exit": pid, "returncode": os.waitstatus_to_exitcode(status)})

    def receive(self) -> bool:
        """One request; ``False`` on EOF."""
        fds = array.array("i")
        msg, ancdata, _flags, _addr = self.sock.recvmsg(
            MAX_MESSAGE, socket.CMSG_SPACE(MAX_FDS * fds.itemsize)
        )
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
        if not msg:
            for fd in fds:
                os.close(fd)
            return False
        req = json.loads(msg)
        self.spawn(req, list(fds))
        return True

    def kill_children(self) -> None:
        for pid in self.children:
            for kill in (os.killpg, os.kill):
                with contextlib.suppress(OSError):
                    kill(pid, signal.SIGKILL)


def main(argv: list[str]) -> int:
    server = int(argv[2]) if len(argv) > 2 else os.getppid()
    _pdeathsig()
    if os.getppid() != server:
        return 1
    sock = socket.socket(fileno=int(argv[1]))
    sock.setblocking(True)
    helper = Helper(sock)
    wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    # The helper ends with its socket (EOF) or its server (PDEATHSIG), never by a signal sent to
    # the server's process group: an MCP client that SIGTERMs ``mcpexec mcp`` while it drains,
    # or a terminal's ^C, would otherwise kill every running attempt with the helper.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, "request")
    sel.register(wake_r, selectors.EVENT_READ, "child")
    helper.send({"ready": os.getpid()})
    try:
        while True:
            for key, _ in sel.select():
                if key.data == "child":
                    try:
                        while os.read(wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                    helper.reap()
                elif not helper.receive():
                    return 0
            helper.reap()  # a child may have exited while a spawn blocked
    except (BrokenPipeError, ConnectionResetError):
        return 0
    finally:
        helper.kill_children()


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
