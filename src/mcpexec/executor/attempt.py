"""One attempt of the subprocess executor: spawn, supervise, kill, collect.

Lifecycle of an attempt (see :meth:`Attempt.run`):

1. workdir (0700) with inputs, the script file, ``output/``, ``tmp/`` and ``.mcpexec/``;
2. environment from an allowlist (never the server's environment);
3. spawn from the event-loop thread (PDEATHSIG is per *thread*), in a new session, with rlimits and
   the cgroup join done in a syscall-only ``preexec``; stdin is ``/dev/null``;
4. wait for the first of: exit, deadline, ``cancel``. On deadline/cancel: SIGTERM the tree, give it
   ``kill_grace_s``, then SIGKILL it. When the main process exits by itself, whatever it left
   running gets the same treatment: a backgrounded daemon never outlives its run;
5. drain the pipes with a bounded wait (a grandchild holding stdout is dead by now; if one escaped,
   we stop listening rather than hang), then read the result file and collect artifacts.

Process exit is observed through ``SubprocessProtocol.process_exited`` (the child watcher), never
through the pipes: ``asyncio.subprocess.Process.wait()`` may wait for pipe EOF, which a grandchild
holding stdout can delay forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mcpexec.executor.base import ExecRequest, ExecResult, ExecSink
from mcpexec.executor.hooks import Spawn
from mcpexec.executor.limits import exec_wrapper, make_preexec, rlimits_for
from mcpexec.executor.mechanism import ProcessTree, TreeMechanism
from mcpexec.executor.output import OutputPump
from mcpexec.executor.workdir import CONTROL_DIR, ProgressTail, Workdir, leaf_name
from mcpexec.models import ExecSpec, Failure, FailureKind, Progress, Stream

if TYPE_CHECKING:
    from mcpexec.executor.subprocess import SubprocessExecutor

PROGRESS_INTERVAL_S = 0.15
DRAIN_TIMEOUT_S = 1.0  # after the sweep the pipes close at once, unless a process escaped it
REAP_TIMEOUT_S = 5.0  # SIGKILLed processes vanish in milliseconds; this only bounds a bug
_INTERPRETERS = {
    "python": ("python3", ".py"),
    "bash": ("bash", ".sh"),
    "sh": ("sh", ".sh"),
    "node": ("node", ".js"),
}


class _SpawnError(Exception):
    pass


class _Protocol(asyncio.SubprocessProtocol):
    def __init__(self, loop: asyncio.AbstractEventLoop, pump: OutputPump) -> None:
        self.pump = pump
        self.exited: asyncio.Future[None] = loop.create_future()
        self.pipes: dict[int, asyncio.Future[None]] = {
            1: loop.create_future(),
            2: loop.create_future(),
        }

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.pump.feed(Stream.STDOUT if fd == 1 else Stream.STDERR, data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        fut = self.pipes.get(fd)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


def _which(prog: str, path: str, cwd: Path) -> str | None:
    if "/" in prog:  # relative to the workdir, as exec would take it; exec reports the rest
        return str(cwd / prog)
    return shutil.which(prog, path=path)


def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def classify(
    returncode: int,
    reason: FailureKind | None,
    *,
    timeout_s: float,
    cpu_limit_s: int | None,
    cpu_used_s: float | None,
    duration_s: float,
) -> tuple[int | None, int | None, Failure | None]:
    """``(exit_code, signal, failure)`` for a finished main process."""
    exit_code, sig = (None, -returncode) if returncode < 0 else (returncode, None)
    if reason is FailureKind.TIMEOUT:
        return exit_code, sig, Failure(kind=reason, message=f"timed out after {timeout_s:g} s")
    if reason is FailureKind.CANCELLED:
        return exit_code, sig, Failure(kind=reason, message="cancelled")
    if returncode == 0:
        return 0, None, None
    if cpu_limit_s is not None:
        # SIGXCPU is the soft limit; SIGKILL we did not send is the hard one. A shell running the
        # burner as a child reports them as 128+N. Only a SIGKILL needs evidence of CPU use: the
        # tree's cgroup total if known, else the wall time (a single thread's CPU ≤ wall time).
        died = sig if sig is not None else (exit_code or 0) - 128
        used = cpu_used_s if cpu_used_s is not None else duration_s
        if died == signal.SIGXCPU or (died == signal.SIGKILL and used >= 0.95 * cpu_limit_s):
            msg = f"CPU time limit of {cpu_limit_s} s exceeded"
            return exit_code, sig, Failure(kind=FailureKind.CPU_LIMIT, message=msg)
    if sig is not None:
        msg = f"killed by {_signame(sig)}"
        return None, sig, Failure(kind=FailureKind.SIGNAL, message=msg)
    return (
        exit_code,
        None,
        Failure(kind=FailureKind.EXIT_CODE, message=f"exited with code {exit_code}"),
    )


class Attempt:
    def __init__(
        self,
        executor: SubprocessExecutor,
        mechanism: TreeMechanism,
        request: ExecRequest,
        sink: ExecSink,
        cancel: asyncio.Event,
    ) -> None:
        self.ex = executor
        self.mechanism = mechanism
        self.request = request
        self.limits = request.limits
        self.sink = sink
        self.cancel = cancel
        self.token = secrets.token_hex(16)
        self.leaf = leaf_name(request.run_id, request.attempt)
        self.started = time.monotonic()
        self.notes: list[str] = []
        self.workdir: Workdir | None = None
        self.tree: ProcessTree | None = None
        self.transport: asyncio.SubprocessTransport | None = None
        self.pump: OutputPump | None = None
        self.hooks = executor.attempt_hooks(request)

    def _spawn_error(self, message: str) -> ExecResult:
        failure = Failure(kind=FailureKind.SPAWN_ERROR, message=message)
        return ExecResult(succeeded=False, failure=failure, duration_s=self._elapsed())

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    async def run(self) -> ExecResult:
        try:
            return self._finalise(await self._run())
        except BaseException:
            # Cancelled (or a sink failed): nothing of the task may survive us.
            if self.tree is not None:
                self.tree.kill()
            if self.pump is not None:
                self.pump.abort()
            raise
        finally:
            self._cleanup()

    def _finalise(self, result: ExecResult) -> ExecResult:
        """Record the isolation and limits; redact secret values from what is kept."""
        red = self.hooks.redactor
        failure, notes, value = result.failure, result.notes, result.result
        if red is not None and red.active:
            if failure is not None:
                failure = Failure(kind=failure.kind, message=red.redact_text(failure.message))
            notes = [red.redact_text(n) for n in notes]
            if value is not None:
                value = json.loads(red.redact_text(json.dumps(value)))
        return dataclasses.replace(
            result,
            failure=failure,
            notes=notes,
            result=value,
            isolation=self.hooks.isolation,
            limits=self.hooks.limits,
        )

    async def _progress(self, progress: Progress) -> None:
        red = self.hooks.redactor
        if red is not None and red.active and progress.message is not None:
            progress = Progress(value=progress.value, message=red.redact_text(progress.message))
        await self.sink.progress(progress)

    def _cleanup(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if self.tree is not None:
            self.tree.close()
        try:
            if self.workdir is not None:
                self.hooks.release_workdir(self.workdir, self.ex.keep_workdirs)
        finally:
            self.hooks.close()

    def _prepare(self, spec: ExecSpec, wd: Workdir, home: Path, path: str) -> tuple[list[str], str]:
        """Write the inputs (and script); return argv and the executable to exec. ``home`` is
        the workdir as the task sees it."""
        for name, value in spec.inputs.items():
            data = value.encode() if isinstance(value, str) else value.data()
            try:
                wd.write_new(name, data)
            except FileExistsError:
                raise _SpawnError(f"input {name!r} collides with another file") from None
        if spec.command is not None:
            exe = _which(spec.command[0], path, wd.path)
            if exe is None:
                raise _SpawnError(f"command not found: {spec.command[0]} (PATH={path})")
            # Checked here because the exec wrapper would turn a failed exec into exit 126/127.
            if not os.path.isfile(exe) or not os.access(exe, os.X_OK):
                raise _SpawnError(
                    f"cannot execute {spec.command[0]}: Permission denied (not an executable file)"
                )
            return list(spec.command), exe
        if spec.shell is not None:
            return ["/bin/sh", "-c", spec.shell], "/bin/sh"
        assert spec.script is not None
        interpreter, ext = _INTERPRETERS[spec.script.language]
        exe = shutil.which(interpreter, path=path)
        if exe is None:
            lang = spec.script.language
            raise _SpawnError(f"interpreter not found: {interpreter} for {lang} (PATH={path})")
        script = f"{CONTROL_DIR}/script{ext}"
        wd.write_new(script, spec.script.source.encode())
        return [interpreter, str(home / script)], exe

    async def _run(self) -> ExecResult:
        spec = self.request.spec
        hooks = self.hooks
        try:
            wd = self.workdir = hooks.create_workdir(self.ex.instance_dir, self.leaf)
            home = Path(hooks.task_home) if hooks.task_home else wd.path
            env = self.ex.environment(self.request, home, self.token)
            if hooks.task_tmp:
                env["TMPDIR"] = hooks.task_tmp
            argv, exe = self._prepare(spec, wd, home, env["PATH"])
            self.tree = self.mechanism.new_tree(wd.path.name, self.token)
            spawn = hooks.spawn(Spawn(argv, exe, env, wd.path), wd, self.tree.cgroup_path)
        except _SpawnError as exc:
            return self._spawn_error(str(exc))
        except (OSError, ValueError) as exc:
            return self._spawn_error(f"could not prepare the working directory: {exc}")

        loop = asyncio.get_running_loop()
        pump = self.pump = OutputPump(
            self.sink, self.limits.max_output_bytes, redactor=hooks.redactor
        )
        proto = _Protocol(loop, pump)
        rlimits = rlimits_for(self.limits, address_space=spawn.address_space, nproc=spawn.nproc)
        procs_paths = [p for p in (self.tree.procs_path, *spawn.procs_paths) if p is not None]
        wrapper = exec_wrapper(rlimits, procs_paths, spawn.drop_to)
        preexec: Callable[[], None] | None = None
        if wrapper is not None:
            argv = [*wrapper, spawn.executable, *spawn.argv[1:]]
            executable = wrapper[0]
        else:
            argv, executable = spawn.argv, spawn.executable
            preexec = make_preexec(
                rlimits, self.tree.procs_fd, extra_procs_fds=spawn.procs_fds, drop_to=spawn.drop_to
            )
        try:
            # The cgroup.procs descriptors are O_CLOEXEC and not in pass_fds: a preexec child
            # writes them, then close_fds and exec drop them, so the task never holds them.
            transport, _ = await loop.subprocess_exec(
                lambda: proto,
                *argv,
                executable=executable,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=spawn.cwd,
                env=spawn.env,
                start_new_session=True,
                pass_fds=spawn.pass_fds,
                preexec_fn=preexec,  # syscalls only: see limits.make_preexec
            )
        except subprocess.SubprocessError:
            return self._spawn_error(
                "could not set up the child (cgroup join, rlimits or uid change failed)"
            )
        except OSError as exc:
            return self._spawn_error(f"cannot execute {spawn.executable}: {exc.strerror or exc}")
        finally:
            self.tree.release_child_fd()
            hooks.after_spawn()
        self.transport = transport
        self.tree.attach(transport.get_pid())
        pump.pauser = self._pauser
        pump.start()
        return await self._supervise(proto, pump, wd)

    def _pauser(self, stream: Stream, paused: bool) -> None:
        assert self.transport is not None
        pipe = cast(
            "asyncio.ReadTransport | None",
            self.transport.get_pipe_transport(1 if stream is Stream.STDOUT else 2),
        )
        if pipe is not None and not pipe.is_closing():
            if paused:
                pipe.pause_reading()
            else:
                pipe.resume_reading()

    async def _supervise(self, proto: _Protocol, pump: OutputPump, wd: Workdir) -> ExecResult:
        assert self.tree is not None
        assert self.transport is not None
        tree, limits = self.tree, self.limits
        progress = ProgressTail(wd)
        tailer = asyncio.ensure_future(self._tail_progress(progress))
        cancelled = asyncio.ensure_future(self.cancel.wait())
        waiters: list[asyncio.Future[Any]] = [proto.exited, cancelled]
        reason: FailureKind | None = None
        try:
            await asyncio.wait(waiters, timeout=limits.timeout_s, return_when="FIRST_COMPLETED")
            if not proto.exited.done():
                reason = FailureKind.CANCELLED if self.cancel.is_set() else FailureKind.TIMEOUT
            # Main process gone or being stopped: TERM the tree (leftover daemons included),
            # grace, then KILL whatever remains.
            grace_end = time.monotonic() + limits.kill_grace_s
            if reason is not None or not tree.empty():
                tree.terminate()
                await self._wait_gone(proto, grace_end)
            tree.kill()
            await self._wait_gone(proto, time.monotonic() + REAP_TIMEOUT_S)
            if not proto.exited.done():
                self.notes.append("the main process did not exit after SIGKILL")
            cpu_used = tree.cpu_seconds()
            await self._drain(proto)
        finally:
            cancelled.cancel()
            tailer.cancel()
        await asyncio.gather(tailer, return_exceptions=True)
        await pump.finish()
        latest = progress.poll(final=True)
        if latest is not None:
            await self._progress(latest)
        result, note = wd.read_result()
        if note:
            self.notes.append(note)
        refused: list[str] = []
        collected = []
        for name, file, size in wd.artifacts(
            limits.max_artifacts, limits.max_artifact_bytes, refused, self.notes
        ):
            await self.sink.artifact(name, file, size)
            collected.append(name)
        returncode = self.transport.get_returncode()
        duration = self._elapsed()
        exit_code, sig, failure = classify(
            -signal.SIGKILL if returncode is None else returncode,
            reason,
            timeout_s=limits.timeout_s,
            cpu_limit_s=limits.cpu_s,
            cpu_used_s=cpu_used,
            duration_s=duration,
        )
        failure = self.hooks.reclassify(failure, self.notes)
        return ExecResult(
            succeeded=failure is None,
            exit_code=exit_code,
            signal=sig,
            failure=failure,
            output_truncated=pump.truncated,
            result=result,
            artifacts=collected,
            duration_s=duration,
            refused_artifacts=refused,
            notes=self.notes,
        )

    async def _wait_gone(self, proto: _Protocol, deadline: float) -> None:
        """Until the main process has exited and the tree is empty, or ``deadline``."""
        assert self.tree is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(proto.exited), deadline - time.monotonic())
        await self.tree.wait_empty(max(0.0, deadline - time.monotonic()))

    async def _drain(self, proto: _Protocol) -> None:
        pipes = list(proto.pipes.values())
        _, pending = await asyncio.wait(pipes, timeout=DRAIN_TIMEOUT_S)
        if pending:
            # Only a process that escaped the sweep can still hold them (environ mode).
            self.notes.append("output pipes still held open after the tree was killed")
            for fd in (1, 2):
                assert self.transport is not None
                pipe = self.transport.get_pipe_transport(fd)
                if pipe is not None:
                    pipe.close()

    async def _tail_progress(self, tail: ProgressTail) -> None:
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_S)
            latest = tail.poll()
            if latest is not None:
                await self._progress(latest)
