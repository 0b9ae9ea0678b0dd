"""``MemoryStore``'s workflows (issue 16): definitions, workflow runs and their events.

Like the rest of ``MemoryStore``, no method awaits inside, so each is atomic on one loop; values
cross the boundary through JSON, as the SQLite store's do."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection
from datetime import datetime
from typing import Any

from mcpexec.errors import Conflict
from mcpexec.store._memory_events import event_log
from mcpexec.store._shared import utc
from mcpexec.store.base import WorkflowEvent, WorkflowRecord, WorkflowRunRecord


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


class MemoryWorkflows:
    """State lives in ``_wf_*`` attributes created on first use."""

    def _wf(
        self,
    ) -> tuple[
        dict[tuple[str, str], list[WorkflowRecord]],
        dict[str, WorkflowRunRecord],
        list[WorkflowEvent],
    ]:
        if not hasattr(self, "_wf_defs"):
            self._wf_defs: dict[tuple[str, str], list[WorkflowRecord]] = {}
            self._wf_runs: dict[str, WorkflowRunRecord] = {}
            self._wf_events: list[WorkflowEvent] = []
            self._wf_seq = 0
        return self._wf_defs, self._wf_runs, self._wf_events

    def _wf_next(self) -> int:
        self._wf()
        self._wf_seq += 1
        return self._wf_seq

    @staticmethod
    def _out_run(run: WorkflowRunRecord) -> WorkflowRunRecord:
        return dataclasses.replace(run, params=_copy(run.params), state=_copy(run.state))

    def _append(self, events: list[WorkflowEvent]) -> None:
        stored = self._wf()[2]
        runs = self._wf()[1]
        for event in events:
            run = runs.get(event.run_id)
            if run is not None:
                data = {"workflow": run.workflow, "status": run.status, "step": event.step}
                kind = f"workflow.{event.kind}"
                event_log(self).append(run.tenant, run.owner, kind, run.id, data)
            stored.append(
                dataclasses.replace(
                    event, at=utc(event.at), detail=_copy(event.detail), seq=self._wf_next()
                )
            )

    async def define_workflow(self, record: WorkflowRecord) -> tuple[WorkflowRecord, bool]:
        versions = self._wf()[0].setdefault((record.tenant, record.name), [])
        if versions and versions[-1].content_hash == record.content_hash:
            return versions[-1], False
        stored = dataclasses.replace(
            record,
            version=len(versions) + 1,
            definition=_copy(record.definition),
            created_at=utc(record.created_at),
        )
        versions.append(stored)
        return stored, True

    async def get_workflow(
        self, tenant: str, name: str, version: int | None
    ) -> WorkflowRecord | None:
        versions = self._wf()[0].get((tenant, name), [])
        if version is None:
            return versions[-1] if versions else None
        return next((v for v in versions if v.version == version), None)

    async def list_workflows(self, tenant: str | None) -> list[WorkflowRecord]:
        defs = self._wf()[0]
        return [
            defs[key][-1]
            for key in sorted(defs)
            if defs[key] and (tenant is None or key[0] == tenant)
        ]

    async def workflow_versions(self, tenant: str, name: str) -> list[WorkflowRecord]:
        return list(self._wf()[0].get((tenant, name), []))

    async def create_workflow_run(
        self, run: WorkflowRunRecord, events: list[WorkflowEvent]
    ) -> WorkflowRunRecord:
        runs = self._wf()[1]
        if run.id in runs:
            raise Conflict(f"workflow run id {run.id!r} already exists")
        stored = dataclasses.replace(
            self._out_run(run),
            revision=1,
            seq=self._wf_next(),
            created_at=utc(run.created_at),
            updated_at=utc(run.updated_at),
        )
        runs[run.id] = stored
        self._append(events)
        return self._out_run(stored)

    async def get_workflow_run(
        self, run_id: str, tenant: str | None = None
    ) -> WorkflowRunRecord | None:
        run = self._wf()[1].get(run_id)
        if run is None or (tenant is not None and run.tenant != tenant):
            return None
        return self._out_run(run)

    async def list_workflow_runs(
        self,
        tenant: str | None,
        *,
        workflow: str | None = None,
        statuses: Collection[str] = (),
        limit: int = 100,
    ) -> list[WorkflowRunRecord]:
        found = [
            r
            for r in self._wf()[1].values()
            if (tenant is None or r.tenant == tenant)
            and (workflow is None or r.workflow == workflow)
            and (not statuses or r.status in statuses)
        ]
        found.sort(key=lambda r: r.seq, reverse=True)
        return [self._out_run(r) for r in found[: max(0, limit)]]

    async def update_workflow_run(
        self,
        run_id: str,
        expected_revision: int,
        status: str,
        state: dict[str, Any],
        now: datetime,
        events: list[WorkflowEvent],
    ) -> WorkflowRunRecord | None:
        runs = self._wf()[1]
        run = runs.get(run_id)
        if run is None or run.revision != expected_revision:
            return None
        updated = dataclasses.replace(
            run,
            status=status,
            state=_copy(state),
            updated_at=utc(now),
            revision=run.revision + 1,
        )
        runs[run_id] = updated
        if updated.status != run.status:
            data = {"workflow": run.workflow, "status": updated.status}
            event_log(self).append(run.tenant, run.owner, "workflow.status", run_id, data)
        self._append(events)
        return self._out_run(updated)

    async def add_workflow_events(self, events: list[WorkflowEvent]) -> None:
        self._append(events)

    async def workflow_events(
        self, run_id: str, after: int = 0, limit: int = 500
    ) -> list[WorkflowEvent]:
        found = [e for e in self._wf()[2] if e.run_id == run_id and e.seq > after]
        return [dataclasses.replace(e, detail=_copy(e.detail)) for e in found[: max(0, limit)]]
