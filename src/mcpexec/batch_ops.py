"""The batch submit (issue 12): up to ``MAX_BATCH`` runs checked one by one and stored in one
durable transaction (``Store.enqueue_many``), with a result or an error per item.

Every item goes through what a single submit does (``App.prepare``: access, labels, spec,
webhook, task and parameters, the tenant's limits; then the storage budget, the queue limits
counted with the items before it, the idempotency key and its replay check, the audit entry),
so a batch accepts exactly the runs that single submits would have. A refused item does not
touch the others; with ``all_or_nothing`` one refused item stores nothing (``BatchRefused``).
The metric and the workers' wake-up follow the commit, as for single submits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from mcpexec.errors import BatchRefused, BatchTooLarge, IdempotencyConflict, McpexecError
from mcpexec.models import MAX_BATCH, ExecSpec, Run, RunRequest
from mcpexec.store.base import Enqueued, NewRun, TenantRecord
from mcpexec.tenancy import Action
from mcpexec.tenant_ops import tenant_spec

if TYPE_CHECKING:
    from mcpexec.app import App, Principal


def replay_conflict(new: NewRun, run: Run) -> IdempotencyConflict | None:
    """The 409 of an idempotency key used with another request (``Run.same_request``); a
    task's run is answered as it was stored (its spec is the task's, not the request's)."""
    if new.task is not None or run.same_request(
        new.spec, new.retry, new.priority, new.labels, new.run_at, new.worker_labels
    ):
        return None
    return IdempotencyConflict(key=new.idempotency_key, run_id=run.id)


class BatchOps:
    def __init__(self, app: App) -> None:
        self.app = app

    async def submit_many(
        self,
        requests: Sequence[RunRequest | McpexecError],
        principal: Principal,
        *,
        all_or_nothing: bool = False,
        traceparent: str | None = None,
    ) -> list[Enqueued]:
        """One ``Enqueued`` per request, in order: ``(run, created)`` or the error that
        refused it. An item may already be an error (the adapter could not parse it): it is
        reported as such. ``all_or_nothing``: any refused item raises ``BatchRefused`` (with
        each refused item's index) and nothing is stored."""
        app = self.app
        if len(requests) > MAX_BATCH:
            raise BatchTooLarge(
                f"a batch holds at most {MAX_BATCH} runs, this one {len(requests)}: split it",
                field="runs",
                max_items=MAX_BATCH,
                items=len(requests),
            )
        app.check_access(principal, Action.SUBMIT)  # the batch as a whole, as one submit
        results: list[Enqueued | None] = [None] * len(requests)
        prepared: list[tuple[int, NewRun]] = []
        limit_spec = await self._tenant_limits(principal.tenant)
        for index, request in enumerate(requests):
            if isinstance(request, McpexecError):
                results[index] = request
                continue
            try:
                new = await app.prepare(
                    request, principal, traceparent=traceparent, limit_spec=limit_spec
                )
            except McpexecError as exc:
                results[index] = exc
                continue
            prepared.append((index, new))
        _refuse_if(all_or_nothing, results)
        if prepared:
            try:  # the tenant's and the server's storage budget: the same for every item
                await app._check_storage(principal.tenant)
            except McpexecError as exc:
                for index, _ in prepared:
                    results[index] = exc
                prepared = []
            _refuse_if(all_or_nothing, results)
        if prepared:
            stamped = [app.stamp(new, principal) for _, new in prepared]
            try:
                stored = await app.store.enqueue_many(
                    stamped, all_or_nothing=all_or_nothing, check_replay=replay_conflict
                )
            except BatchRefused as exc:  # the store's indexes are those of `prepared`
                raise BatchRefused([(prepared[i][0], e) for i, e in exc.failures]) from None
            created = False
            for (index, _), outcome in zip(prepared, stored, strict=True):
                results[index] = outcome
                if isinstance(outcome, tuple) and outcome[1]:
                    app.metrics.submitted(outcome[0])
                    created = True
            if created:
                app.events.work_available()
        answered = [r for r in results if r is not None]
        assert len(answered) == len(requests), "every item has its result"
        return answered

    async def _tenant_limits(self, tenant: str) -> _Limits:
        """The tenant's limits, looked up once for the whole batch."""
        return _Limits(await self.app.store.get_tenant(tenant), self.app.settings.default_timeout_s)


class _Limits:
    """``tenancy.limit_spec`` with the tenant record already read."""

    def __init__(self, record: TenantRecord | None, default_timeout_s: float) -> None:
        self.record = record
        self.default_timeout_s = default_timeout_s

    async def __call__(self, spec: ExecSpec) -> ExecSpec:
        if self.record is None:
            return spec
        return tenant_spec(spec, self.record, self.default_timeout_s)


def _refuse_if(all_or_nothing: bool, results: Sequence[Enqueued | None]) -> None:
    failures = [(i, r) for i, r in enumerate(results) if isinstance(r, McpexecError)]
    if all_or_nothing and failures:
        raise BatchRefused(failures)
