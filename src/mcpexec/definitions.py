"""Task definitions as App operations (issue 11): define, look up, list, diff, archive, and
build the run of a task. ``App.tasks`` is a :class:`TaskOps`; every adapter calls it.

Tasks are named per tenant: a principal defines and runs the tasks of its own tenant; an admin
lists those of every tenant. The owner recorded is the principal's token id (the tenancy work
may refine it). A run of a task pins ``task@version`` and carries the validated parameters as
data (``Run.params``); the worker adds their ``MCPEXEC_PARAM_*`` variables at spawn, next to
``MCPEXEC_RUN_ID`` (``ExecSpec.env`` refuses ``MCPEXEC_*``), and ``params.json`` is an input.
"""

from __future__ import annotations

import dataclasses
import statistics
import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mcpexec.errors import InvalidRequest, TaskArchived, TaskNotFound
from mcpexec.models import (
    DEFAULT_RETRY,
    RetryPolicy,
    Run,
    RunFilter,
    RunRequest,
    RunStatus,
    utcnow,
)
from mcpexec.store.base import NewRun, TaskRecord
from mcpexec.tasks import TaskDefinition, diff_tasks, parse_task_ref, task_run_spec
from mcpexec.tenancy import RESERVED_LABEL_PREFIX

if TYPE_CHECKING:
    from mcpexec.app import App, Principal

#: How many of a task's latest successful runs the duration estimate is the median of.
ESTIMATE_SAMPLE = 20
#: Run-queueing fields a run request may set for a task run (the spec is the task's).
_QUEUE_FIELDS = {
    "priority",
    "run_at",
    "retry",
    "labels",
    "idempotency_key",
    "task",
    "params",
    "notify",
    "worker_labels",
}


class TaskOps:
    def __init__(self, app: App) -> None:
        self.app = app

    async def define(self, task: TaskDefinition, principal: Principal) -> tuple[TaskRecord, bool]:
        """The version ``task`` is: the latest (``False``) when the content is the same, else
        a new immutable version (``True``)."""
        self.app._require_submit(principal)
        problem = self.app.executor.check_spec(task.exec_spec())
        if problem is not None:
            raise InvalidRequest(problem)
        return await self.app.store.define_task(principal.tenant, principal.id, task, utcnow())

    async def get(self, ref: str, principal: Principal) -> TaskRecord:
        """``name`` (the latest version) or ``name@version``, archived or not."""
        name, version = _parse_ref(ref)
        record = await self.app.store.get_task(principal.tenant, name, version)
        if record is None:
            what = f"{name}@{version}" if version is not None else name
            raise TaskNotFound(f"no task {what!r}", task=name, version=version)
        return record

    async def list_tasks(self, principal: Principal, archived: bool = False) -> list[TaskRecord]:
        return await self.app.store.list_tasks(self.app._tenant_scope(principal), archived)

    async def versions(self, name: str, principal: Principal) -> list[TaskRecord]:
        found = await self.app.store.task_versions(principal.tenant, name)
        if not found:
            raise TaskNotFound(f"no task {name!r}", task=name)
        return found

    async def diff(self, name: str, old: int, new: int, principal: Principal) -> list[str]:
        """A unified diff of two versions' canonical YAML ([] when equal)."""
        a = await self.get(f"{name}@{old}", principal)
        b = await self.get(f"{name}@{new}", principal)
        return diff_tasks(a.definition, b.definition, f"v{old}", f"v{new}")

    async def archive(self, name: str, principal: Principal) -> TaskRecord:
        """Archive every version: no new runs or schedules fire; history stays readable."""
        self.app._require_submit(principal)
        if not await self.app.store.archive_task(principal.tenant, name):
            raise TaskNotFound(f"no task {name!r}", task=name)
        return await self.get(name, principal)

    # -- runs of a task -----------------------------------------------------------------------
    async def prepare(
        self,
        request: RunRequest,
        principal: Principal,
        rerun_of: str | None = None,
        reserved: Collection[str] = (),
    ) -> NewRun:
        """The run of ``request.task`` with ``request.params``, checked (422 naming the param)
        and pinned to the version resolved now, not yet stored (``App.submit`` and the batch
        submit enqueue it). Queueing fields of the request override the task's defaults
        (labels are merged); its run spec is the task's alone."""
        self.app._require_submit(principal)
        self.app.check_labels(request.labels, reserved=reserved)
        assert request.task is not None
        fields = RunRequest.model_fields
        spec_fields = sorted(  # a default spelled out (MCP sends network=false) is no change
            name
            for name in request.model_fields_set - _QUEUE_FIELDS
            if getattr(request, name) != fields[name].get_default(call_default_factory=True)
        )
        if spec_fields:
            raise InvalidRequest(
                f"{spec_fields[0]!r}: a task's run spec comes from its definition "
                "(give only task, params, priority, run_at, retry, labels, idempotency_key)",
                field=spec_fields[0],
            )
        record = await self.get(request.task, principal)
        given = request.model_fields_set
        new = await self.new_run(
            principal.tenant,
            record,
            request.params or {},
            labels=dict(request.labels),
            worker_labels=request.worker_labels,
            run_at=request.run_at,
            priority=request.priority if "priority" in given else None,
            retry=request.retry,
            idempotency_key=request.idempotency_key,
            rerun_of=rerun_of,
        )
        if request.notify is not None:
            new = dataclasses.replace(new, notify=request.notify)
        return new

    async def new_run(
        self,
        tenant: str,
        record: TaskRecord,
        params: Mapping[str, Any],
        *,
        labels: dict[str, str],
        worker_labels: Sequence[str] = (),
        run_at: datetime | None = None,
        priority: int | None = None,
        retry: RetryPolicy | None = None,
        idempotency_key: str | None = None,
        rerun_of: str | None = None,
        run_id: str | None = None,
        owner: str | None = None,
    ) -> NewRun:
        """The run of one version of a task (the scheduler's fires use it too, owned by the
        schedule's owner)."""
        if record.archived:
            raise TaskArchived(f"task {record.name!r} is archived", task=record.name)
        task = record.definition
        spec, _, values = task_run_spec(task, params)
        problem = self.app.executor.check_spec(spec)
        if problem is not None:
            raise InvalidRequest(problem)
        spec = await self.app.tenancy.limit_spec(tenant, spec)
        return NewRun(
            id=run_id or uuid.uuid4().hex,
            tenant=tenant,
            spec=spec,
            retry=retry or task.retry or DEFAULT_RETRY,
            priority=task.priority if priority is None else priority,
            labels={**task.labels, **labels},
            # the task's and the request's: a worker must have them all
            worker_labels=self.app.tools.run_worker_labels(
                spec.tool, (*task.worker_labels, *worker_labels)
            ),
            created_at=utcnow(),
            run_at=run_at,
            idempotency_key=idempotency_key,
            rerun_of=rerun_of,
            task=record.name,
            task_version=record.version,
            params=values,
            estimated_duration_ms=await self.estimate_ms(tenant, record.name),
            owner=owner,
        )

    async def estimate_ms(self, tenant: str, name: str) -> int | None:
        """The median duration of the task's latest successful runs; ``None`` without any."""
        completed = frozenset({RunStatus.COMPLETED})
        filter = RunFilter(tenant=tenant, task=name, status=completed)
        page = await self.app.store.list_runs(filter, ESTIMATE_SAMPLE, None)
        durations = [
            (r.finished_at - r.started_at).total_seconds() * 1000
            for r in page.runs
            if r.started_at is not None and r.finished_at is not None
        ]
        return round(statistics.median(durations)) if durations else None


def rerun_request(old: Run) -> RunRequest:
    """A rerun of a task's run: the same version and parameters (not the latest version)."""
    return RunRequest(
        task=f"{old.task}@{old.task_version}",
        params=old.params or {},
        priority=old.priority,
        retry=old.retry,
        labels={k: v for k, v in old.labels.items() if not k.startswith(RESERVED_LABEL_PREFIX)},
        worker_labels=old.worker_labels,
    )


def _parse_ref(ref: str) -> tuple[str, int | None]:
    try:
        return parse_task_ref(ref)
    except ValueError as exc:
        raise InvalidRequest(str(exc), field="task") from None


def task_view(record: TaskRecord) -> dict[str, Any]:
    """A task version as REST and MCP show it: the record, the definition (canonical, defaults
    left out) and its YAML."""
    from mcpexec.tasks import canonical_content, task_yaml

    return {
        "name": record.name,
        "version": record.version,
        "tenant": record.tenant,
        "owner": record.owner,
        "content_hash": record.content_hash,
        "created_at": record.created_at.isoformat(),
        "archived": record.archived,
        "description": record.definition.description,
        "definition": {"name": record.name, **canonical_content(record.definition)},
        "yaml": task_yaml(record.definition),
    }
