"""Workflows as App operations (issue 16): ``App.workflows`` is a :class:`WorkflowOps`; REST,
MCP and the CLI call it. Definitions are per tenant, like tasks; a workflow run is visible
under the same rule as a run (``tenancy.decide``: another tenant's is not found, 404), and the
manual actions need the right to cancel it (its owner, or an operator/admin of the tenant).

Every manual action is one compare-and-set of the run's state under the engine's lock, then
wakes the engine, which does the rest (starting what became ready) on its next tick.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mcpexec.errors import (
    CheckpointInvalid,
    InvalidRequest,
    StepNotFound,
    WorkflowNotFound,
    WorkflowRunNotFound,
    WorkflowStateConflict,
)
from mcpexec.models import utcnow
from mcpexec.params import validate_params
from mcpexec.store.base import WorkflowEvent, WorkflowRecord, WorkflowRunRecord
from mcpexec.tasks import TASK_NAME
from mcpexec.tenancy import Action
from mcpexec.workflows import exposed
from mcpexec.workflows import workspace as ws
from mcpexec.workflows.engine import Pending, WorkflowEngine
from mcpexec.workflows.spec import (
    WorkflowDefinition,
    canonical,
    content_hash,
    load_definition,
    parse_workflow,
)
from mcpexec.workflows.state import (
    ACTIVE,
    TERMINAL,
    Caller,
    StepState,
    StepStatus,
    WorkflowState,
    WorkflowStatus,
)

if TYPE_CHECKING:
    from mcpexec.app import App, Principal

#: Manual actions.
ACTIONS = ("pause", "resume", "approve", "skip", "retry", "rollback", "mark_done", "cancel")
#: The step states each step action refuses (``approve``: all but a waiting gate).
_REFUSES = {
    "skip": frozenset({StepStatus.COMPLETED, StepStatus.SKIPPED}),
    "retry": frozenset({StepStatus.RUNNING, StepStatus.PENDING}),
    "rollback": frozenset({StepStatus.PENDING}),
    "mark_done": frozenset({StepStatus.COMPLETED, StepStatus.SKIPPED}),
}


def step_actions(status: StepStatus) -> list[str]:
    """The step actions that apply to a step in ``status`` (what the dashboard offers; the
    action itself still checks the run's state)."""
    found = ["approve"] if status is StepStatus.WAITING else []
    return found + [action for action, refused in _REFUSES.items() if status not in refused]


_RUN_ID_LEN = 32


class WorkflowOps:
    def __init__(self, app: App) -> None:
        self.app = app
        self.engine = WorkflowEngine(app)

    # -- definitions --------------------------------------------------------------------------
    async def define(
        self, text: str, principal: Principal, *, source: str = "definition"
    ) -> tuple[WorkflowRecord, bool]:
        """Define a workflow from YAML or JSON text: the latest version when the content is the
        same (``False``), else a new version (``True``)."""
        self.app._require_submit(principal)
        definition = parse_workflow(text, source=source)
        await exposed.check_unique(self, definition.name, definition, principal)
        for name, step in definition.steps.items():
            if step.kind in ("command", "shell", "script", "tool"):
                problem = self.app.executor.check_spec(step.exec_spec())
                if problem is not None:
                    raise InvalidRequest(f"step {name!r}: {problem}", field=f"steps.{name}")
        record = WorkflowRecord(
            tenant=principal.tenant,
            name=definition.name,
            version=0,
            owner=principal.id,
            content_hash=content_hash(definition),
            definition=canonical(definition),
            created_at=utcnow(),
        )
        return await self.app.store.define_workflow(record)

    async def get(self, ref: str, principal: Principal) -> WorkflowRecord:
        self.app.check_access(principal, Action.READ)
        name, _, version = ref.partition("@")
        if not TASK_NAME.fullmatch(name) or (version and not version.isdigit()):
            raise InvalidRequest(f"workflow {ref!r}: write NAME or NAME@VERSION", field="workflow")
        found = await self.app.store.get_workflow(
            principal.tenant, name, int(version) if version else None
        )
        if found is None:
            raise WorkflowNotFound(f"no workflow {ref!r}", workflow=ref)
        return found

    async def list_workflows(self, principal: Principal) -> list[WorkflowRecord]:
        self.app.check_access(principal, Action.READ)
        return await self.app.store.list_workflows(self.app._tenant_scope(principal))

    async def versions(self, name: str, principal: Principal) -> list[WorkflowRecord]:
        self.app.check_access(principal, Action.READ)
        found = await self.app.store.workflow_versions(principal.tenant, name)
        if not found:
            raise WorkflowNotFound(f"no workflow {name!r}", workflow=name)
        return found

    # -- as MCP tools (``mcp_tool``) -------------------------------------------------------------
    async def exposed_tools(self, principal: Principal) -> list[exposed.ExposedTool]:
        """The MCP tools the caller's tenant's workflows and steps expose."""
        return await exposed.exposed_tools(self, principal)

    async def call_tool(
        self, name: str, arguments: dict[str, Any], principal: Principal
    ) -> WorkflowRunRecord:
        """Start the run behind tool ``name``; answer when its step (or it) is done or waits."""
        return await exposed.call_exposed(self, name, arguments, principal)

    # -- workflow runs ------------------------------------------------------------------------
    async def start(
        self, ref: str, params: dict[str, Any], principal: Principal
    ) -> WorkflowRunRecord:
        """Queue a workflow run; parameters are validated first (nothing runs otherwise)."""
        self.app._require_submit(principal)
        record = await self.get(ref, principal)
        definition = load_definition(record.definition)
        try:
            values = validate_params(definition.params, params)
        except InvalidRequest as exc:  # the shared checker speaks of tasks
            message = exc.message.replace("this task", "this workflow").replace(
                "by the task", "by the workflow"
            )
            raise InvalidRequest(message, **exc.details) from None
        run_id = uuid.uuid4().hex
        now = utcnow()
        state = WorkflowState(
            workspace="",
            caller=Caller(
                token_id=principal.token_id,
                name=principal.name,
                role=principal.role,
                tenant=principal.tenant,
                principal_id=principal.principal_id,
            ),
            steps={name: StepState() for name in definition.steps},
        )
        rec = WorkflowRunRecord(
            id=run_id,
            tenant=principal.tenant,
            owner=principal.id,
            workflow=record.name,
            version=record.version,
            params=values,
            status=WorkflowStatus.QUEUED.value,
            state=state.model_dump(mode="json"),
            created_at=now,
            updated_at=now,
        )
        event = WorkflowEvent(
            run_id=run_id, at=now, kind="queued", detail={"version": record.version}
        )
        created = await self.app.store.create_workflow_run(rec, [event])
        self.engine.emit(created, [event])
        self.engine.wake()
        return created

    async def get_run(
        self, run_id: str, principal: Principal, action: Action = Action.READ
    ) -> WorkflowRunRecord:
        rec = await self.app.store.get_workflow_run(run_id, self.app._tenant_scope(principal))
        if rec is None:
            raise WorkflowRunNotFound(f"no workflow run {run_id!r}", workflow_run=run_id)
        self.app.check_access(
            principal, action, rec.tenant, rec.owner, what="workflow run", ident=run_id
        )
        return rec

    async def list_runs(
        self,
        principal: Principal,
        *,
        workflow: str | None = None,
        statuses: frozenset[str] = frozenset(),
        limit: int = 100,
    ) -> list[WorkflowRunRecord]:
        self.app.check_access(principal, Action.READ)
        found = await self.app.store.list_workflow_runs(
            self.app._tenant_scope(principal),
            workflow=workflow,
            statuses=statuses,
            limit=max(1, min(limit, 500)),
        )
        from mcpexec.tenancy import Scope, scope_of

        if scope_of(principal.role, Action.READ) is Scope.OWN:
            found = [r for r in found if r.owner == principal.id]
        return found

    async def events(
        self, run_id: str, principal: Principal, after: int = 0, limit: int = 500
    ) -> list[WorkflowEvent]:
        await self.get_run(run_id, principal)
        return await self.app.store.workflow_events(run_id, after, max(1, min(limit, 5000)))

    async def definition_of(self, rec: WorkflowRunRecord) -> WorkflowDefinition:
        return await self.engine.definition(rec)

    # -- manual actions -----------------------------------------------------------------------
    async def act(
        self, run_id: str, action: str, principal: Principal, step: str | None = None
    ) -> WorkflowRunRecord:
        """One manual action: ``pause``, ``resume``, ``approve`` (a gate), ``skip``, ``retry``,
        ``rollback`` (to a step), ``mark_done`` (a person finished the step and wrote its
        checkpoint), ``cancel``."""
        action = action.replace("-", "_")
        if action not in ACTIONS:
            raise InvalidRequest(f"action {action!r}: one of {', '.join(ACTIONS)}", field="action")
        handler: Callable[..., Any] = getattr(self, f"_{action}")
        for _ in range(20):  # compare-and-set: another process may write in between
            rec = await self.get_run(run_id, principal, Action.CANCEL)
            definition = await self.engine.definition(rec)
            async with self.engine.lock:
                rec = await self.get_run(run_id, principal, Action.CANCEL)
                change = Pending(rec)
                if step is not None and step not in change.state.steps:
                    known = ", ".join(change.state.steps)
                    raise StepNotFound(
                        f"step {step!r}: not a step of this workflow ({known})", step=step
                    )
                await handler(change, definition, step)
                change.changed = True
                saved = await self.engine.save(change)
            if saved is not None:
                self.engine.wake()
                return saved
        raise WorkflowStateConflict("the workflow run keeps changing; try again")

    @staticmethod
    def _need_step(step: str | None, action: str) -> str:
        if step is None:
            raise InvalidRequest(f"{action} needs a step", field="step")
        return step

    @staticmethod
    def _need_active(change: Pending, action: str) -> None:
        if change.status is WorkflowStatus.CANCELLED or (
            change.status in TERMINAL and action not in ("retry", "skip", "mark-done")
        ):
            raise WorkflowStateConflict(
                f"workflow run is {change.status.value}; {action} needs an active one",
                status=change.status.value,
            )

    async def _pause(
        self, change: Pending, definition: WorkflowDefinition, step: str | None
    ) -> None:
        self._need_active(change, "pause")
        change.state.paused = True
        if change.status is not WorkflowStatus.QUEUED:
            change.status = WorkflowStatus.WAITING
        change.event("paused")

    async def _resume(
        self, change: Pending, definition: WorkflowDefinition, step: str | None
    ) -> None:
        self._need_active(change, "resume")
        change.state.paused = False
        if change.status is not WorkflowStatus.QUEUED:
            change.status = WorkflowStatus.RUNNING
        # a person resolved what the branch holds
        await self.engine.note_head(change, resolved=True)
        change.event("resumed")

    async def _approve(
        self, change: Pending, definition: WorkflowDefinition, step: str | None
    ) -> None:
        self._need_active(change, "approve")
        if step is None:
            waiting = [n for n, s in change.state.steps.items() if s.status is StepStatus.WAITING]
            if len(waiting) != 1:
                raise WorkflowStateConflict(
                    f"name the gate to approve (waiting: {', '.join(waiting) or 'none'})",
                    waiting=waiting,
                )
            step = waiting[0]
        st = change.state.steps[step]
        if st.status is not StepStatus.WAITING:
            raise WorkflowStateConflict(
                f"step {step!r} is {st.status.value}, not a gate waiting for approval",
                step=step,
            )
        st.status = StepStatus.COMPLETED
        st.finished_at = change.now.isoformat()
        change.status = WorkflowStatus.RUNNING
        change.event("gate_approved", step)

    async def _skip(
        self, change: Pending, definition: WorkflowDefinition, step: str | None
    ) -> None:
        name = self._need_step(step, "skip")
        st = change.state.steps[name]
        if st.status in _REFUSES["skip"]:
            raise WorkflowStateConflict(f"step {name!r} is {st.status.value} already", step=name)
        if change.status is WorkflowStatus.CANCELLED:
            raise WorkflowStateConflict("workflow run is cancelled", status="cancelled")
        if st.status is StepStatus.RUNNING and st.run_id:
            await self.engine.cancel_run(change, st.run_id)
        st.status = StepStatus.SKIPPED
        st.finished_at = change.now.isoformat()
        self._reopen(change)
        await self.engine.note_head(change, resolved=True)
        change.event("step_skipped", name)

    async def _retry(
        self, change: Pending, definition: WorkflowDefinition, step: str | None
    ) -> None:
        name = self._need_step(step, "retry")
        st = change.state.steps[name]
        if st.status in _REFUSES["retry"]:
            raise WorkflowStateConflict(f"step {name!r} is {st.status.value}", step=name)
        if change.status is WorkflowStatus.CANCELLED:
            raise WorkflowStateConflict("workflow run is cancelled", status="cancelled")
        self._reset(change, definition, name)
        self._reopen(change)
        await self.engine.note_head(change, resolved=True)
        change.event("step_retry", name)

    async def _rollback(
        self, change: Pending, definition: WorkflowDefinition, step: str | None
    ) -> None:
        """Back to before ``step``: its rollback runs (``git: reset`` to the commit it started
        at, keeping ``preserve``; or its run spec), it and every step after it become pending,
        and the workflow pauses for a person to resume (or cancel)."""
        name = self._need_step(step, "rollback")
        if change.status is WorkflowStatus.CANCELLED:
            raise WorkflowStateConflict("workflow run is cancelled", status="cancelled")
        st = change.state.steps[name]
        if st.status in _REFUSES["rollback"]:
            raise WorkflowStateConflict(
                f"step {name!r} is {st.status.value}: nothing to roll back", step=name
            )
        later = self._dependents(definition, name)
        for other in later:
            ost = change.state.steps[other]
            if ost.status is StepStatus.RUNNING and ost.run_id:
                await self.engine.cancel_run(change, ost.run_id)
        await self.engine.rollback_step(change, definition, name, st)
        for other in later:
            self._reset(change, definition, other)
        change.state.paused = True
        change.status = WorkflowStatus.WAITING
        change.state.finished_at = None
        change.event("rolled_back_to", name, reset=sorted(later))

    async def _mark_done(
        self, change: Pending, definition: WorkflowDefinition, step: str | None
    ) -> None:
        name = self._need_step(step, "mark-done")
        self._need_active(change, "mark-done")
        spec = definition.steps[name]
        st = change.state.steps[name]
        if st.status in _REFUSES["mark_done"]:
            raise WorkflowStateConflict(f"step {name!r} is {st.status.value} already", step=name)
        if spec.checkpoint is not None:
            read = self.engine.read_checkpoint(change, name, spec, st)
            if read is None or read.status != "valid":
                why = "missing" if read is None or read.status == "missing" else read.message
                raise CheckpointInvalid(
                    f"step {name!r}: its checkpoint {spec.checkpoint.file!r} is {why}; write a "
                    "valid one first",
                    step=name,
                )
            st.checkpoint = read.content
            st.checkpoint_at = change.now.isoformat()
        if st.status is StepStatus.RUNNING and st.run_id:
            await self.engine.cancel_run(change, st.run_id)
        st.status = StepStatus.COMPLETED
        st.manual = True
        st.error = None
        st.finished_at = change.now.isoformat()
        # the person's own commits are the step's
        await self.engine.note_head(change, resolved=True)
        self._reopen(change)
        change.event("step_marked_done", name)

    async def _cancel(
        self, change: Pending, definition: WorkflowDefinition, step: str | None
    ) -> None:
        self._need_active(change, "cancel")
        change.status = WorkflowStatus.CANCELLED
        await self.engine.stop_all(change)
        change.event("cancelled")

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _reopen(change: Pending) -> None:
        """A failed (or rolled back) run whose step a person fixed goes on."""
        if change.status in (WorkflowStatus.FAILED, WorkflowStatus.ROLLED_BACK):
            change.status = WorkflowStatus.RUNNING
            change.state.error = None
            change.state.finished_at = None

    @staticmethod
    def _reset(change: Pending, definition: WorkflowDefinition, name: str) -> None:
        old = change.state.steps[name]
        change.state.steps[name] = StepState(runs=old.runs, checkpoint=old.checkpoint)
        del definition

    @staticmethod
    def _dependents(definition: WorkflowDefinition, name: str) -> list[str]:
        """``name`` and every step that needs it, directly or not."""
        found = {name}
        grew = True
        while grew:
            grew = False
            for other, step in definition.steps.items():
                if other not in found and any(d in found for d in step.needs):
                    found.add(other)
                    grew = True
        return [n for n in definition.order() if n in found]


def run_view(rec: WorkflowRunRecord) -> dict[str, Any]:
    """A workflow run as REST, MCP and the CLI show it."""
    state = WorkflowState.model_validate(rec.state)
    return {
        "id": rec.id,
        "workflow": rec.workflow,
        "version": rec.version,
        "tenant": rec.tenant,
        "owner": rec.owner,
        "status": rec.status,
        "params": rec.params,
        "paused": state.paused,
        "workspace": state.workspace or None,
        "branch": state.branch,
        "error": state.error,
        "created_at": rec.created_at.isoformat(),
        "updated_at": rec.updated_at.isoformat(),
        "started_at": state.started_at,
        "finished_at": state.finished_at,
        "steps": {
            name: st.model_dump(mode="json", exclude={"refused"})
            for name, st in state.steps.items()
        },
        "sessions": state.sessions,
    }


def workflow_view(record: WorkflowRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "version": record.version,
        "tenant": record.tenant,
        "owner": record.owner,
        "content_hash": record.content_hash,
        "created_at": record.created_at.isoformat(),
        "definition": record.definition,
    }


def event_view(event: WorkflowEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "at": event.at.isoformat(),
        "kind": event.kind,
        "step": event.step,
        "detail": event.detail,
    }


__all__ = [
    "ACTIONS",
    "ACTIVE",
    "WorkflowOps",
    "event_view",
    "run_view",
    "step_actions",
    "workflow_view",
    "ws",
]
