"""One attempt of the subprocess executor: spawn, supervise, kill, collect.

Lifecycle of an attempt (see :meth:`AttemptSupervisor.run`), from the frozen
:class:`~mcpexec.executor.hooks.AttemptContext` the executor built:

1. workdir (0700) with inputs, the script file, ``output/``, ``tmp/`` and ``.mcpexec/``;
2. environment from an allowlist (never the server's environment: ``command.RunEnvironment``);
3. spawn from the event-loop thread (PDEATHSIG is per *thread*), in a new session, through the
   exec wrapper that joins the cgroups (``cgroup.CgroupJoin``), sets the rlimits and drops the uid
   before the run's process starts (``limits.exec_wrapper``; a syscall-only ``preexec`` when the
   wrapper's programs are missing); stdin is ``/dev/null``;
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
import errno
import json
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

from mcpexec.aio import wait_done, wait_event
from mcpexec.executor.base import ExecResult, ExecSink
from mcpexec.executor.cgroup import CgroupJoin
from mcpexec.executor.command import Command, CommandError, command_for
from mcpexec.executor.hooks import AttemptContext, Spawn
from mcpexec.executor.limits import RLimit, exec_wrapper, make_preexec, rlimits_for
from mcpexec.executor.outcome import classify, scrub_paths
from mcpexec.executor.output import OutputPump
from mcpexec.executor.process_tree import ProcessTree
from mcpexec.executor.spawner import HelperTransport, Spawner, SpawnFailed
from mcpexec.executor.workdir import ProgressTail, Workdir, leaf_name
from mcpexec.models import ExecSpec, Failure, FailureKind, Progress, Stream

#: What a blob store says about a name it cannot store (the run's fault, not the store's):
#: the artifact is skipped with a note and the run goes on.
_NAME_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL})
PROGRESS_INTERVAL_S = 0.15
DRAIN_TIMEOUT_S = 1.0  # after the sweep the pipes close at once, unless a process escaped it
REAP_TIMEOUT_S = 5.0  # SIGKILLed processes vanish in milliseconds; this only bounds a bug


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


class AttemptSupervisor:
    """Runs one attempt from its context to an ``ExecResult``; the tree is dead when it returns."""

    def __init__(self, context: AttemptContext, sink: ExecSink, cancel: asyncio.Event) -> None:
        self.context = context
        self.request = request = context.request
        self.limits = request.limits
        self.sink = sink
        self.cancel = cancel
        self.leaf = leaf_name(request.run_id, request.attempt)
        self.started = time.monotonic()
        self.notes: list[str] = []
        self.workdir: Workdir | None = None
        self.tree: ProcessTree | None = None
        self.transport: asyncio.SubprocessTransport | HelperTransport | None = None
        self.pump: OutputPump | None = None
        self.hooks = context.hooks

    def _spawn_error(self, message: str) -> ExecResult:
        failure = Failure(kind=FailureKind.SPAWN_ERROR, message=message)
        return ExecResult(succeeded=False, failure=failure, duration_s=self._elapsed())

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    async def run(self) -> ExecResult:
        try:
            return self._finalise(await self._run())
        except BaseException:
            # Cancelled (or a sink failed): nothing of the run's processes may survive us.
            if self.tree is not None:
                self.tree.kill()
            if self.pump is not None:
                self.pump.abort()
            raise
        finally:
            self._cleanup()

    def _finalise(self, result: ExecResult) -> ExecResult:
        """Record the isolation and limits; redact secret values from what is kept; replace the
        server's paths in messages (the one place they are made into what is kept)."""
        red = self.hooks.redactor
        failure, notes, value = result.failure, result.notes, result.result
        paths = {str(self.context.instance_dir.parent): "<work root>"}
        if self.workdir is not None:
            paths[str(self.workdir.path)] = self.hooks.run_home or "$HOME"
        if failure is not None:
            failure = Failure(kind=failure.kind, message=scrub_paths(failure.message, paths))
        notes = [scrub_paths(n, paths) for n in notes]
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
        """The transport on the loop; the rest (the tree is dead by now, or SIGKILLed an
        instant ago on the cancellation path) by the executor's cleanup thread."""
        if self.transport is not None:
            self.transport.close()
        if self.context.cleanup is None:
            self._remove_remains()
        else:
            self.context.cleanup.submit(self._remove_remains)

    def _remove_remains(self) -> None:
        # The workdir last: its name is also the leaf's and the limit groups' name, and a
        # workdir that exists makes the next attempt of the same name pick another one.
        try:
            if self.tree is not None:
                self.tree.close()
            self.hooks.close()
        finally:
            if self.workdir is not None:
                self.hooks.release_workdir(self.workdir, self.context.keep_workdirs)

    def _prepare(self, spec: ExecSpec, wd: Workdir, home: Path, path: str) -> Command:
        """Write the inputs (and script); return what to exec. ``home`` is the workdir as the
        run's process sees it."""
        for name, value in spec.inputs.items():
            data = value.encode() if isinstance(value, str) else value.data()
            try:
                wd.write_new(name, data)
            except FileExistsError:
                raise CommandError(f"input {name!r} collides with another file") from None
        command = command_for(spec, path=path, cwd=wd.path, home=home)
        if command.script is not None:
            wd.write_new(*command.script)
        return command

    async def _run(self) -> ExecResult:
        spec = self.request.spec
        hooks = self.hooks
        ctx = self.context
        try:
            wd = self.workdir = hooks.create_workdir(ctx.instance_dir, self.leaf)
            home = Path(hooks.run_home) if hooks.run_home else wd.path
            env = ctx.environment.build(home, hooks.run_tmp)
            cmd = self._prepare(spec, wd, home, env["PATH"])
            self.tree = ctx.mechanism.new_tree(wd.path.name, ctx.environment.token)
            spawn = hooks.spawn(Spawn(cmd.argv, cmd.executable, env, wd.path), wd, self.tree.leaf)
        except CommandError as exc:
            return self._spawn_error(str(exc))
        except (OSError, ValueError) as exc:
            return self._spawn_error(f"could not prepare the working directory: {exc}")

        loop = asyncio.get_running_loop()
        pump = self.pump = OutputPump(
            self.sink, self.limits.max_output_bytes, redactor=hooks.redactor
        )
        proto = _Protocol(loop, pump)
        rlimits = rlimits_for(self.limits, address_space=spawn.address_space, nproc=spawn.nproc)
        join = self.tree.join.plus(spawn.join)
        spawner = ctx.spawner
        if spawner is not None and spawner.alive and spawner.fits(spawn.argv, spawn.env):
            with contextlib.suppress(ConnectionError):  # the helper is gone: the wrapper below
                failed = await self._helper_spawn(spawner, proto, spawn, join, rlimits)
                return failed or await self._started(proto, pump, wd)
        wrapper = exec_wrapper(rlimits, join.paths, spawn.drop_to)
        preexec: Callable[[], None] | None = None
        if wrapper is not None:
            argv = [*wrapper, spawn.executable, *spawn.argv[1:]]
            executable = wrapper[0]
        else:
            argv, executable = spawn.argv, spawn.executable
            preexec = make_preexec(rlimits, join.fds, drop_to=spawn.drop_to)
        try:
            # The cgroup.procs descriptors are O_CLOEXEC and not in pass_fds: a preexec child
            # writes them, then close_fds and exec drop them, so the run never holds them.
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
        return await self._started(proto, pump, wd)

    async def _helper_spawn(
        self,
        spawner: Spawner,
        proto: _Protocol,
        spawn: Spawn,
        join: CgroupJoin,
        rlimits: list[RLimit],
    ) -> ExecResult | None:
        """Spawn through the helper: ``None`` once started, else the spawn error; raises
        ``ConnectionError`` (nothing released yet) when the helper is gone."""
        assert self.tree is not None
        try:
            self.transport = await spawner.spawn(
                proto,
                argv=spawn.argv,
                executable=spawn.executable,
                env=spawn.env,
                cwd=spawn.cwd,
                pass_fds=spawn.pass_fds,
                join_fds=join.fds,
                rlimits=rlimits,
                drop_to=spawn.drop_to,
            )
        except SpawnFailed as exc:
            if exc.where == "exec":
                reason = exc.strerror or exc
                return self._spawn_error(f"cannot execute {spawn.executable}: {reason}")
            return self._spawn_error(
                f"could not set up the child ({exc.where}: {exc.strerror or exc})"
            )
        finally:
            if self.transport is not None or sys.exc_info()[0] is not ConnectionError:
                self.tree.release_child_fd()
                self.hooks.after_spawn()
        return None

    async def _started(self, proto: _Protocol, pump: OutputPump, wd: Workdir) -> ExecResult:
        assert self.tree is not None
        assert self.transport is not None
        self.tree.attach(self.transport.get_pid())
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
        progress = ProgressForwarder(ProgressTail(wd), self._progress)
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
                tree.terminate(spare=self.hooks.spared_by_sigterm(self.transport.get_pid()))
                await self._wait_gone(proto, grace_end)
                tree.kill()
            # else: the main process exited and the tree is empty. Nothing can join an empty
            # tree (a member must fork, or we must place one), so there is nothing to KILL.
            await self._wait_gone(proto, time.monotonic() + REAP_TIMEOUT_S)
            if not proto.exited.done():
                self.notes.append("the main process did not exit after SIGKILL")
            cpu_used = tree.cpu_seconds()
            await self._drain(proto)
        except BaseException:
            progress.abort()
            raise
        finally:
            cancelled.cancel()
        await progress.finish()
        tail = await pump.finish(deliver=not self.request.output_tail_in_result)
        result, note = wd.read_result()
        if note:
            self.notes.append(note)
        refused: list[str] = []
        collected = []
        for name, file, size in wd.artifacts(
            limits.max_artifacts, limits.max_artifact_bytes, refused, self.notes
        ):
            try:
                await self.sink.artifact(name, file, size)
            except OSError as exc:
                if exc.errno not in _NAME_ERRNOS:
                    raise  # a full disk or a broken store is not the artifact's fault
                refused.append(name)
                why = exc.strerror or errno.errorcode.get(exc.errno or 0, "error")
                self.notes.append(f"artifact {name!r} refused: the name cannot be stored ({why})")
                continue
            collected.append(name)
        returncode = self.hooks.returncode(self.transport.get_returncode())
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
            log_tail=tail,
        )

    async def _wait_gone(self, proto: _Protocol, deadline: float) -> None:
        """Until the main process has exited and the tree is empty, or ``deadline``."""
        assert self.tree is not None
        await wait_done(proto.exited, deadline - time.monotonic())
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


class ProgressForwarder:
    """Follows the progress file every :data:`PROGRESS_INTERVAL_S` and forwards each new value;
    :meth:`finish` stops it cooperatively and forwards the final value, so the last progress
    arrives exactly once. Cancelling the follower instead could cancel a forward in flight: the
    value was taken from the file but never stored, and the final poll (nothing new) lost it."""

    def __init__(self, tail: ProgressTail, forward: Callable[[Progress], Awaitable[None]]) -> None:
        self._tail = tail
        self._forward = forward
        self._stop = asyncio.Event()
        self._task = asyncio.ensure_future(self._follow())

    async def _follow(self) -> None:
        while not self._stop.is_set():
            await wait_event(self._stop, PROGRESS_INTERVAL_S)
            if self._stop.is_set():
                return
            latest = self._tail.poll()
            if latest is not None:
                await self._forward(latest)

    async def finish(self) -> None:
        """Let a forward in flight complete, then forward what the file ends with."""
        self._stop.set()
        await asyncio.gather(self._task, return_exceptions=True)  # a failed forward: as before
        latest = self._tail.poll(final=True)
        if latest is not None:
            await self._forward(latest)

    def abort(self) -> None:
        self._task.cancel()
