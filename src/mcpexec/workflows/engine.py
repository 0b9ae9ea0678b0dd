"""The workflow engine (issue 16): moves durable workflow runs on.

One loop per process (``App.start_background(workflows=True)``; ``serve`` runs it). Each tick
reads the active workflow runs from the store and advances each: a queued run starts when its
workflow's ``concurrency`` allows; a running step is done when its run completed **and** its
checkpoint validates (a valid checkpoint written while the run still runs completes the step at
once and the run is stopped); ready steps start as ordinary mcpexec runs (labels
``workflow_run=ID``, ``step=NAME``), submitted as the principal that started the workflow. The
new state is written by compare-and-set on the run's revision, so two engines (two ``serve``
processes on one store) never both move one run; a step's run is submitted under an
idempotency key (run, step, try), so a lost race submits nothing twice. Nothing is kept only in
memory: after a crash the next tick continues from the stored state.

It ticks at once when woken: a checkpoint file of a running step written (inotify,
``watch.CheckpointWatcher``), a step's run changed in this process, a start or a manual action.
Otherwise, while steps run, every ``WATCHED_S`` (``CHECK_S`` where inotify is not available: a
``stat`` of each checkpoint and a read of each step's run), for runs that finish in another
process, lingering agents and checkpoint timeouts; idle, every ``IDLE_S``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcpexec.aio import Waiters, wait_event
from mcpexec.errors import McpexecError, QuotaExceeded, WorkflowStateConflict
from mcpexec.models import DEFAULT_RETRY, ExecSpec, RetryPolicy, Run, RunStatus, Stream, utcnow
from mcpexec.params import param_inputs
from mcpexec.store.base import NewRun, WorkflowEvent, WorkflowRunRecord
from mcpexec.worker import WORKSPACE_LABEL
from mcpexec.workflows import workspace as ws
from mcpexec.workflows.checkpoints import CheckpointRead, read_checkpoint, read_text
from mcpexec.workflows.providers import AgentContext, provider
from mcpexec.workflows.spec import GitRollback, StepSpec, WorkflowDefinition, load_definition
from mcpexec.workflows.state import (
    ACTIVE,
    SATISFIED,
    StepState,
    StepStatus,
    WorkflowState,
    WorkflowStatus,
)
from mcpexec.workflows.watch import CheckpointWatcher

if TYPE_CHECKING:
    from mcpexec.app import App, Principal

log = logging.getLogger(__name__)

#: While steps run: the tick's interval where the checkpoint watch works, and where it does not.
WATCHED_S = 0.5
CHECK_S = 0.05
#: How long a run that wrote its valid checkpoint may go on before it is stopped.
LINGER_S = 2.0
IDLE_S = 1.0
#: A step's rollback run is not retried.
NO_RETRY = RetryPolicy(max_attempts=1)
PROMPT_FILE = "prompt.md"
MAX_INSTRUCTIONS = 256 * 1024
STDOUT_READ = 1024 * 1024


def iso(value: datetime) -> str:
    return value.isoformat()


class Pending:
    """The changes one advance makes: the state, the status and the events to append."""

    def __init__(self, rec: WorkflowRunRecord) -> None:
        self.rec = rec
        self.state = WorkflowState.model_validate(rec.state)
        self.status = WorkflowStatus(rec.status)
        self.events: list[WorkflowEvent] = []
        self.changed = False
        self.now = utcnow()

    def event(self, kind: str, step: str | None = None, **detail: Any) -> None:
        self.events.append(
            WorkflowEvent(run_id=self.rec.id, at=self.now, kind=kind, step=step, detail=detail)
        )
        self.changed = True
        log.info("workflow %s %s%s %s", self.rec.id, kind, f" {step}" if step else "", detail or "")


class WorkflowEngine:
    def __init__(self, app: App) -> None:
        self.app = app
        self._wake = asyncio.Event()
        #: One writer of workflow state at a time in this process (ticks and manual actions).
        self.lock = asyncio.Lock()
        self._defs: dict[tuple[str, str, int], WorkflowDefinition] = {}
        #: The runs of running steps (seen by the last tick): their changes wake the loop.
        self._watched: set[str] = set()
        #: Their checkpoint files: written, they wake the loop.
        self.checkpoints = CheckpointWatcher(self.wake)
        #: Callers waiting for a workflow run's next saved change (``wait_saved``).
        self._saved = Waiters()
        #: Test and benchmark hook: called after each tick.
        self.on_tick: Callable[[], Awaitable[None]] | None = None

    def wake(self) -> None:
        self._wake.set()

    def _run_changed(self, run_id: str) -> None:
        if run_id in self._watched:
            self._wake.set()

    async def run_forever(self) -> None:
        # A step's run that changes in this process (it finished) wakes the loop at once.
        self.app.events.add_change_listener(self._run_changed)
        try:
            while True:
                busy = False
                try:
                    busy = await self.tick()
                except Exception:
                    log.exception("workflow engine tick failed")
                if self.on_tick is not None:
                    await self.on_tick()
                interval = IDLE_S
                if busy:
                    interval = WATCHED_S if self.checkpoints.working else CHECK_S
                await wait_event(self._wake, interval)
                self._wake.clear()
        finally:
            await self.checkpoints.close()

    async def definition(self, rec: WorkflowRunRecord) -> WorkflowDefinition:
        key = (rec.tenant, rec.workflow, rec.version)
        found = self._defs.get(key)
        if found is None:
            record = await self.app.store.get_workflow(rec.tenant, rec.workflow, rec.version)
            if record is None:
                raise McpexecError(f"workflow {rec.workflow}@{rec.version} is gone")
            found = self._defs[key] = load_definition(record.definition)
        return found

    async def tick(self) -> bool:
        """Advance every active workflow run once; ``True`` while any has a running step."""
        active = await self.app.store.list_workflow_runs(None, statuses=ACTIVE, limit=10_000)
        busy = False
        watched: set[str] = set()
        files: set[Path] = set()
        for rec in sorted(active, key=lambda r: r.seq):
            async with self.lock:
                fresh = await self.app.store.get_workflow_run(rec.id)
                if fresh is None or fresh.status not in ACTIVE:
                    continue
                try:
                    busy |= await self.advance(fresh, watched, files)
                except Exception:
                    log.exception("workflow run %s: advance failed", rec.id)
        self._watched = watched
        self.checkpoints.watch(files)
        return busy

    async def save(self, change: Pending) -> WorkflowRunRecord | None:
        if not change.changed and change.status.value == change.rec.status:
            return change.rec
        if change.status not in ACTIVE and change.state.finished_at is None:
            change.state.finished_at = iso(change.now)
        saved = await self.app.store.update_workflow_run(
            change.rec.id,
            change.rec.revision,
            change.status.value,
            change.state.model_dump(mode="json"),
            change.now,
            change.events,
        )
        if saved is None:
            log.info("workflow run %s moved on meanwhile; next tick", change.rec.id)
        else:
            self.emit(saved, change.events)
            self._saved.notify(saved.id)
        return saved

    async def wait_saved(self, run_id: str, timeout: float) -> None:
        """Return at the next change of ``run_id`` this process saves, or after ``timeout`` (a
        change saved by another process is seen by the caller's next read)."""
        await self._saved.wait(run_id, timeout)

    def emit(self, rec: WorkflowRunRecord, events: list[WorkflowEvent]) -> None:
        """Telemetry, once stored: the steps finished counted (``/metrics``), and the events
        as JSON lines (``workflow_events_file``)."""
        for e in events:
            if e.kind == "step_finished":
                self.app.metrics.workflow_step(rec.tenant, rec.workflow, str(e.detail["status"]))
        target = self.app.settings.workflow_events_file
        if not target or not events:
            return
        lines = "".join(
            json.dumps(
                {
                    "at": e.at.isoformat(),
                    "workflow_run": rec.id,
                    "workflow": rec.workflow,
                    "tenant": rec.tenant,
                    "event": e.kind,
                    "step": e.step,
                    "status": rec.status,
                    **e.detail,
                },
                sort_keys=True,
                default=str,
            )
            + "\n"
            for e in events
        )
        try:
            if target == "-":
                sys.stderr.write(lines)
            else:
                with open(target, "a", encoding="utf-8") as out:
                    out.write(lines)
        except OSError as exc:
            log.warning("workflow events file %s: %s", target, exc)

    # -- one step of the state machine ---------------------------------------------------------
    async def advance(
        self,
        rec: WorkflowRunRecord,
        watched: set[str] | None = None,
        files: set[Path] | None = None,
    ) -> bool:
        """Move ``rec`` on once; ``True`` while it has a running step. The running steps' runs
        are added to ``watched`` and their checkpoint files to ``files``."""
        definition = await self.definition(rec)
        change = Pending(rec)
        if change.status is WorkflowStatus.QUEUED:
            if not await self._may_start(rec, definition):
                return False
            await self._start(change, definition)
        await self.check_running(change, definition)
        if not change.state.paused and change.status in ACTIVE:
            await self._start_ready(change, definition)
        await self._failure_policy(change, definition)
        self._settle(change, definition)
        if change.status not in ACTIVE:
            await self.stop_all(change)
        await self.save(change)
        running = [s for s in change.state.steps.values() if s.status is StepStatus.RUNNING]
        if watched is not None:
            watched.update(s.run_id for s in running if s.run_id)
        if files is not None and change.state.workspace:
            root = Path(change.state.workspace)
            for name, st in change.state.steps.items():
                checkpoint = definition.steps[name].checkpoint
                if st.status is StepStatus.RUNNING and checkpoint is not None:
                    files.add(root / checkpoint.file)
        return bool(running)

    async def _may_start(self, rec: WorkflowRunRecord, definition: WorkflowDefinition) -> bool:
        if definition.concurrency is None:
            return True
        started = await self.app.store.list_workflow_runs(
            rec.tenant,
            workflow=rec.workflow,
            statuses={WorkflowStatus.RUNNING, WorkflowStatus.WAITING},
            limit=definition.concurrency,
        )
        return len(started) < definition.concurrency

    async def _start(self, change: Pending, definition: WorkflowDefinition) -> None:
        root = self.app.executor.workspace_root(self.app.settings.home / "workflows")
        try:
            path, branch = await ws.prepare(
                root, change.rec.id, definition, ws.checkpoint_files(definition)
            )
        except (McpexecError, OSError) as exc:
            change.state.error = f"workspace: {exc}"
            change.status = WorkflowStatus.FAILED
            change.event("error", message=change.state.error)
            return
        change.state.workspace, change.state.branch = path, branch
        if definition.workspace.git:
            change.state.git_head = change.state.git_published = await ws.head(path)
        change.state.started_at = iso(change.now)
        change.status = WorkflowStatus.RUNNING
        change.event("started", workspace=path, branch=branch)

    async def check_running(self, change: Pending, definition: WorkflowDefinition) -> None:
        ended = False
        for name, st in change.state.steps.items():
            if st.status is StepStatus.RUNNING and st.run_id is not None:
                await self._check_step(change, name, definition.steps[name], st)
                ended |= st.status is not StepStatus.RUNNING
        if ended:  # what the steps committed is theirs
            await self.note_head(change)

    async def _check_step(self, change: Pending, name: str, step: StepSpec, st: StepState) -> None:
        assert st.run_id is not None
        run = await self.app.store.get_run(st.run_id)
        if run is None:
            self._fail_step(change, name, st, "its run is gone")
            return
        read = self.read_checkpoint(change, name, step, st)
        if read is not None and read.status == "valid":
            if run.terminal:
                await self._complete(change, name, step, st, run, read)
                return
            # Written while the run still runs: let it exit on its own (its output carries
            # the agent's session id), then stop it after LINGER_S.
            if st.detected_at is None:
                st.detected_at = iso(change.now)
                change.event("checkpoint_detected", name, file=read_file(step), running=True)
            elif _since(change.now, st.detected_at) > LINGER_S:
                await self._complete(change, name, step, st, run, read)
            return
        if not run.terminal:
            timeout = step.checkpoint.timeout_s if step.checkpoint else None
            started = st.started_at
            if (
                timeout is not None
                and started is not None
                and _since(change.now, started) > timeout
            ):
                await self.cancel_run(change, st.run_id)
                self._fail_step(change, name, st, f"no valid checkpoint within {timeout:g} s")
            return
        if run.status is RunStatus.COMPLETED and step.checkpoint is None:
            await self._complete(change, name, step, st, run, None)
        elif run.status is RunStatus.COMPLETED:
            why = "missing" if read is None or read.status == "missing" else read.message
            self._fail_step(
                change, name, st, f"its run completed without a valid checkpoint ({why})"
            )
        else:
            failure = run.failure.message if run.failure else run.status.value
            self._fail_step(change, name, st, f"its run {run.status.value}: {failure}")

    def read_checkpoint(
        self, change: Pending, name: str, step: StepSpec, st: StepState
    ) -> CheckpointRead | None:
        """The step's checkpoint now; a refused one raises an alert event once per version."""
        if step.checkpoint is None or not change.state.workspace:
            return None
        read = read_checkpoint(change.state.workspace, step.checkpoint)
        if read.status == "invalid":
            stamp = list(read.stamp) if read.stamp else [0, 0]
            if st.refused != stamp:
                st.refused = stamp
                change.event("checkpoint_invalid", name, message=read.message, alert=True)
        return read

    async def _complete(
        self,
        change: Pending,
        name: str,
        step: StepSpec,
        st: StepState,
        run: Run,
        read: CheckpointRead | None,
    ) -> None:
        if read is not None:
            st.checkpoint = read.content
            st.checkpoint_at = iso(change.now)
            if st.detected_at is None:
                change.event("checkpoint_detected", name, file=read_file(step))
        if not run.terminal:
            await self.cancel_run(change, run.id)
            change.event("step_stopped", name, run_id=run.id, reason="checkpoint written")
        if step.agent is not None and run.status is RunStatus.COMPLETED:
            session = await self._session_id(step, run)
            if session:
                change.state.sessions[step.agent.session] = session
        st.status = StepStatus.COMPLETED
        st.finished_at = iso(change.now)
        st.error = None
        change.event("step_finished", name, status="completed", run_id=run.id)

    async def note_head(self, change: Pending, *, resolved: bool = False) -> None:
        """Record the branch's commit now, when nothing runs (else it is unknown), and publish
        it onto the branch in the repository — unless someone else committed there since the
        last publication (the run pauses: ``branch_changed``). ``resolved``: a person acted
        on the run and the workspace is what they want; it is published over what is there."""
        state = change.state
        if state.branch is None:
            return
        if any(s.status is StepStatus.RUNNING for s in state.steps.values()):
            state.git_head = None
            return
        state.git_head = await ws.head(state.workspace)
        if state.git_published is None:  # a workspace made before publication existed
            return
        there = await ws.published(state.workspace, state.branch)
        if there not in (state.git_published, state.git_head) and not resolved:
            self._pause_for_branch(change, state.git_published, there, "the repository")
            return
        if state.git_head != there:
            state.git_published = await ws.publish(state.workspace, state.branch)
        else:
            state.git_published = there

    def _pause_for_branch(
        self, change: Pending, expected: str | None, found: str | None, where: str
    ) -> None:
        change.state.paused = True
        change.event(
            "branch_changed",
            alert=True,
            expected=expected,
            found=found,
            where=where,
            message=f"a commit not made by a step, in {where}; resolve it, then resume",
        )

    async def _branch_moved(self, change: Pending) -> bool:
        """An outside commit on the run's branch since its last step: pause and alert."""
        state = change.state
        if state.branch is None or state.git_head is None:
            return False
        if any(s.status is StepStatus.RUNNING for s in state.steps.values()):
            return False
        head = await ws.head(state.workspace)
        if head != state.git_head:
            self._pause_for_branch(change, state.git_head, head, "the workspace")
            return True
        if state.git_published is not None:
            there = await ws.published(state.workspace, state.branch)
            if there != state.git_published:
                self._pause_for_branch(change, state.git_published, there, "the repository")
                return True
        return False

    async def _session_id(self, step: StepSpec, run: Run) -> str | None:
        assert step.agent is not None
        data, _ = await self.app.store.read_log(run.id, Stream.STDOUT, 0, STDOUT_READ)
        return provider(step.agent.provider).session_id(data)

    def _fail_step(self, change: Pending, name: str, st: StepState, message: str) -> None:
        st.status = StepStatus.FAILED
        st.error = message
        st.finished_at = iso(change.now)
        change.event("step_finished", name, status="failed", error=message)

    async def cancel_run(self, change: Pending, run_id: str) -> None:
        run = await self.app.store.request_cancel(run_id, change.now)
        if run is not None and run.status is RunStatus.RUNNING:
            self.app.events.cancel_requested(run_id)
        self.app.events.run_changed(run_id)

    async def stop_all(self, change: Pending) -> None:
        for name, st in change.state.steps.items():
            if st.status is StepStatus.RUNNING and st.run_id is not None:
                await self.cancel_run(change, st.run_id)
                st.status = StepStatus.CANCELLED
                st.finished_at = iso(change.now)
                change.event("step_finished", name, status="cancelled")

    async def _start_ready(self, change: Pending, definition: WorkflowDefinition) -> None:
        steps = change.state.steps
        if any(s.status is StepStatus.FAILED for s in steps.values()):
            return  # a failure decides the run; nothing new starts
        for name in definition.order():
            st = steps[name]
            step = definition.steps[name]
            if st.status is not StepStatus.PENDING:
                continue
            if not all(steps[dep].status in SATISFIED for dep in step.needs):
                continue
            if step.gate is not None:
                st.status = StepStatus.WAITING
                change.event("gate_waiting", name)
                continue
            if await self._branch_moved(change):
                return
            try:
                await self.start_step(change, definition, name, step, st)
            except QuotaExceeded as exc:  # the tenant's queue is full: the next tick tries again
                log.info("workflow run %s: step %s waits: %s", change.rec.id, name, exc.message)
            except McpexecError as exc:
                self._fail_step(change, name, st, f"could not start: {exc.message}")

    async def start_step(
        self,
        change: Pending,
        definition: WorkflowDefinition,
        name: str,
        step: StepSpec,
        st: StepState,
    ) -> None:
        state = change.state
        if definition.workspace.git:
            st.git_base = await ws.head(state.workspace)
        new = await self._new_run(change, definition, name, step, st)
        run = await self._enqueue(state, new)
        st.status = StepStatus.RUNNING
        st.run_id = run.id
        st.runs.append(run.id)
        st.started_at = iso(change.now)
        st.finished_at = None
        st.refused = None
        st.detected_at = None
        change.event("step_started", name, run_id=run.id, step_kind=step.kind)

    def principal(self, state: WorkflowState) -> Principal:
        from mcpexec.app import Principal

        c = state.caller
        return Principal(c.token_id, c.name, c.role, c.tenant, c.principal_id)

    async def _new_run(
        self,
        change: Pending,
        definition: WorkflowDefinition,
        name: str,
        step: StepSpec,
        st: StepState,
    ) -> NewRun:
        rec, state = change.rec, change.state
        labels = {"workflow_run": rec.id, "step": name, WORKSPACE_LABEL: state.workspace}
        key = f"workflow:{rec.id}:{name}:{len(st.runs)}"
        if step.task is not None:
            record = await self.app.tasks.get(step.task, self.principal(state))
            declared = record.definition.params.get("properties", {})
            params = {k: v for k, v in rec.params.items() if k in declared}
            return await self.app.tasks.new_run(
                rec.tenant,
                record,
                params,
                labels=labels,
                retry=step.retry or DEFAULT_RETRY,
                idempotency_key=key,
                owner=rec.owner,
            )
        if step.agent is not None:
            spec = self._agent_spec(change, definition, name, step)
        else:
            spec = ws.wrap_step(step).exec_spec()
        return await self._spec_run(change, spec, labels, key, step.retry or DEFAULT_RETRY)

    async def _spec_run(
        self,
        change: Pending,
        spec: ExecSpec,
        labels: dict[str, str],
        key: str,
        retry: RetryPolicy,
    ) -> NewRun:
        """The run of a step's (or a rollback's) spec: parameters as data, the tenant's limits."""
        rec = change.rec
        files = param_inputs(rec.params).files
        spec = spec.model_copy(update={"inputs": {**spec.inputs, **files}})
        problem = self.app.executor.check_spec(spec)
        if problem is not None:
            raise McpexecError(problem)
        if spec.tool is not None:
            self.app.tools.check_tool_run(spec.tool)
        spec = await self.app.tenancy.limit_spec(rec.tenant, spec)
        return NewRun(
            id=_new_id(),
            tenant=rec.tenant,
            spec=spec,
            retry=retry,
            priority=0,
            labels=labels,
            created_at=change.now,
            idempotency_key=key,
            params=dict(rec.params) or None,
            worker_labels=self.app.tools.run_worker_labels(spec.tool, ()),
        )

    async def _enqueue(self, state: WorkflowState, new: NewRun) -> Run:
        run, _ = await self.app.enqueue(new, self.principal(state))
        return run

    def _agent_spec(
        self, change: Pending, definition: WorkflowDefinition, name: str, step: StepSpec
    ) -> ExecSpec:
        agent = step.agent
        assert agent is not None
        state = change.state
        chosen = provider(agent.provider)
        ctx = AgentContext(prompt_file="$MCPEXEC_PROMPT", workspace=state.workspace)
        session = state.sessions.get(agent.session)
        if session:
            argv = chosen.resume_session(agent, ctx, session)
        else:
            argv = chosen.create_session(agent, ctx)
        prompt = self._prompt(change, definition, name, step)
        wrapper = (
            'MCPEXEC_PROMPT="$PWD/' + PROMPT_FILE + '"; export MCPEXEC_PROMPT; '
            'cd "$MCPEXEC_WORKSPACE" || exit 97; exec "$@" < "$MCPEXEC_PROMPT"'
        )
        return ExecSpec.model_validate(
            {
                "command": ["/bin/sh", "-c", wrapper, "sh", *argv],
                "inputs": {PROMPT_FILE: prompt},
                "env": step.env,
                "timeout_s": step.timeout_s,
                "limits": step.limits,
                "network": step.network,
            }
        )

    def _prompt(
        self, change: Pending, definition: WorkflowDefinition, name: str, step: StepSpec
    ) -> str:
        agent = step.agent
        assert agent is not None
        parts = []
        if agent.instructions:
            parts.append(_read_instructions(change.state.workspace, agent.instructions))
        if agent.prompt:
            parts.append(agent.prompt)
        context = [
            f"workflow: {definition.name}",
            f"workflow_run: {change.rec.id}",
            f"step: {name}",
            f"workspace: {change.state.workspace}",
            "parameters: params.json in the run's working directory, "
            "and MCPEXEC_PARAM_* in the environment",
        ]
        if step.checkpoint is not None:
            context.append(f"checkpoint: {step.checkpoint.file}")
        parts.append("\n".join(["## mcpexec workflow context", *context]))
        return "\n\n".join(parts) + "\n"

    async def _failure_policy(self, change: Pending, definition: WorkflowDefinition) -> None:
        """``on_failure: rollback``: once nothing runs, roll the failed step back."""
        steps = change.state.steps
        if definition.on_failure != "rollback" or change.status not in ACTIVE:
            return
        if any(s.status is StepStatus.RUNNING for s in steps.values()):
            return
        for name, st in steps.items():
            if st.status is StepStatus.FAILED:
                error = st.error
                try:
                    await self.rollback_step(change, definition, name, st)
                except McpexecError as exc:
                    change.event("error", name, message=f"rollback failed: {exc.message}")
                    return
                st.error = error
                change.state.error = f"step {name!r} failed and was rolled back: {error}"
                change.status = WorkflowStatus.ROLLED_BACK
                change.event("rolled_back", name, error=error)
                return

    async def rollback_step(
        self, change: Pending, definition: WorkflowDefinition, name: str, st: StepState
    ) -> None:
        """Run the step's rollback: ``git: reset`` to the commit the step started at keeping
        ``preserve`` (done here, synchronously), or its run spec (an ordinary run, labelled
        ``rollback=NAME``). The step becomes ``rolled_back``."""
        spec = definition.steps[name].rollback
        if spec is None:
            change.event("rollback", name, note="the step defines no rollback")
        elif isinstance(spec, GitRollback):
            if not st.git_base:
                raise WorkflowStateConflict(f"step {name!r} never started: nothing to reset to")
            kept = await ws.git_reset(change.state.workspace, st.git_base, spec.preserve)
            change.event("rollback", name, git_reset=st.git_base, preserved=kept)
        else:
            rec, state = change.rec, change.state
            labels = {"workflow_run": rec.id, "step": name, "rollback": "true"}
            new = await self._spec_run(
                change,
                ws.wrap_step(spec).exec_spec(),
                {**labels, WORKSPACE_LABEL: state.workspace},
                f"workflow:{rec.id}:{name}:rollback:{len(st.runs)}",
                NO_RETRY,
            )
            run = await self._enqueue(state, new)
            st.rollback_run_id = run.id
            change.event("rollback", name, run_id=run.id)
        st.status = StepStatus.ROLLED_BACK
        st.finished_at = iso(change.now)

    def _settle(self, change: Pending, definition: WorkflowDefinition) -> None:
        """The workflow's status from its steps'."""
        if change.status not in ACTIVE or change.status is WorkflowStatus.QUEUED:
            return
        steps = change.state.steps
        failed = [n for n, s in steps.items() if s.status is StepStatus.FAILED]
        running = any(s.status is StepStatus.RUNNING for s in steps.values())
        if failed and not running:
            change.state.error = f"step {failed[0]!r} failed: {steps[failed[0]].error}"
            change.status = WorkflowStatus.FAILED
            change.event("failed", failed[0], error=change.state.error)
            return
        if all(s.status in SATISFIED for s in steps.values()):
            change.status = WorkflowStatus.COMPLETED
            change.event("completed")
            return
        waiting = any(s.status is StepStatus.WAITING for s in steps.values())
        if change.state.paused or (waiting and not running):
            change.status = WorkflowStatus.WAITING
        else:
            change.status = WorkflowStatus.RUNNING


def _read_instructions(workspace: str, rel: str) -> str:
    try:
        return read_text(workspace, rel, MAX_INSTRUCTIONS)
    except ValueError as exc:
        raise McpexecError(f"instructions: {exc}") from None


def _since(now: datetime, then: str) -> float:
    return (now - datetime.fromisoformat(then)).total_seconds()


def read_file(step: StepSpec) -> str | None:
    return None if step.checkpoint is None else step.checkpoint.file


def _new_id() -> str:
    return uuid.uuid4().hex
