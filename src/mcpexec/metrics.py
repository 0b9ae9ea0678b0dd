"""Prometheus metrics (issue 17): what this process saw, plus what the store knows now.

Two kinds of values, kept apart on purpose (docs/observability.md):

- **counters and histograms of this process** (``Metrics``): runs submitted and finished,
  attempts, retries, failures, queue wait, run duration, tool calls, schedule fires. Each
  ``serve`` counts what it did itself; Prometheus tells the processes apart by their scrape
  target (``instance``), and ``sum()`` adds them up.
- **gauges read from the store at each scrape** (``StoreGauges``, filled by
  ``App.metrics_exposition``): runs by status, queue depth and running attempts by tenant,
  workers registered and alive. These are global: every process shows the same values, so
  with several processes use ``max()``, not ``sum()``.

One ``Metrics`` per App (no module-level registry): tests build as many Apps as they like.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mcpexec.alerts import degradations
from mcpexec.models import Failure, Run, RunStatus
from mcpexec.tracing import Tracing

#: Seconds: from a tenth of a second (a `true`) to an hour (a long build).
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                    900.0, 3600.0, math.inf)  # fmt: skip
#: Seconds a run waited in the queue before its first attempt started.
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                300.0, 3600.0, math.inf)  # fmt: skip


@dataclass(frozen=True, slots=True)
class StoreGauges:
    """What the store says now (the same from every process sharing it)."""

    by_status: Mapping[str, int]
    #: tenant → (running, pending)
    by_tenant: Mapping[str, tuple[int, int]]
    workers: int
    workers_alive: int
    worker_slots: int = 0
    worker_busy: int = 0
    #: tenant → seconds the oldest due pending run has waited
    oldest_pending_s: Mapping[str, float] = field(default_factory=dict)


class _StoreCollector(Collector):
    """Yields the gauges of one scrape (set just before ``generate_latest``)."""

    def __init__(self) -> None:
        self.gauges: StoreGauges | None = None

    def collect(self) -> Iterable[Metric]:
        g = self.gauges
        if g is None:
            return
        runs = GaugeMetricFamily("mcpexec_runs", "Runs in the store by status", labels=["status"])
        for status in RunStatus:
            runs.add_metric([status.value], g.by_status.get(status.value, 0))
        yield runs
        depth = GaugeMetricFamily(
            "mcpexec_queue_depth", "Pending runs by tenant (from the store)", labels=["tenant"]
        )
        running = GaugeMetricFamily(
            "mcpexec_running", "Running attempts by tenant (from the store)", labels=["tenant"]
        )
        for tenant, (busy, pending) in sorted(g.by_tenant.items()):
            depth.add_metric([tenant], pending)
            running.add_metric([tenant], busy)
        yield depth
        yield running
        oldest = GaugeMetricFamily(
            "mcpexec_oldest_pending_age_seconds",
            "How long the oldest due pending run of each tenant has waited (from the store)",
            labels=["tenant"],
        )
        for tenant, age in sorted(g.oldest_pending_s.items()):
            oldest.add_metric([tenant], age)
        yield oldest
        yield GaugeMetricFamily("mcpexec_workers", "Registered workers", value=g.workers)
        yield GaugeMetricFamily(
            "mcpexec_workers_alive",
            "Registered workers whose last heartbeat is within two leases",
            value=g.workers_alive,
        )
        yield GaugeMetricFamily(
            "mcpexec_worker_slots", "Worker slots in this process", value=g.worker_slots
        )
        yield GaugeMetricFamily(
            "mcpexec_worker_busy", "Busy worker slots in this process", value=g.worker_busy
        )


class Metrics:
    """The counters and histograms of one process (see the module docstring)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        run = ["tenant", "kind"]
        self.runs_submitted = Counter(
            "mcpexec_runs_submitted", "Runs accepted (new, not idempotent repeats)", run,
            registry=r,
        )  # fmt: skip
        self.runs_finished = Counter(
            "mcpexec_runs_finished", "Runs that reached a terminal status", [*run, "status"],
            registry=r,
        )  # fmt: skip
        self.run_failures = Counter(
            "mcpexec_run_failures", "Runs that ended failed, by failure kind",
            [*run, "failure_kind"], registry=r,
        )  # fmt: skip
        self.attempts = Counter(
            "mcpexec_attempts", "Attempts finished, by outcome (succeeded or the failure kind)",
            [*run, "outcome"], registry=r,
        )  # fmt: skip
        self.retries = Counter(
            "mcpexec_retries", "Failed attempts put back in the queue for another attempt",
            run, registry=r,
        )  # fmt: skip
        self.queue_wait = Histogram(
            "mcpexec_queue_wait_seconds", "From due (submit or run_at) to the first start",
            ["tenant"], buckets=WAIT_BUCKETS, registry=r,
        )  # fmt: skip
        self.run_duration = Histogram(
            "mcpexec_run_duration_seconds", "From the first attempt's start to the run's end",
            [*run, "status"], buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.tool_calls = Counter(
            "mcpexec_tool_calls", "Calls of downstream MCP tools (runs and POST /execute)",
            ["server", "tool", "status"], registry=r,
        )  # fmt: skip
        self.tool_call_duration = Histogram(
            "mcpexec_tool_call_duration_seconds", "Latency of downstream MCP tool calls",
            ["server", "tool"], buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.schedule_fires = Counter(
            "mcpexec_schedule_fires", "Runs created by schedules", ["tenant"], registry=r
        )
        self.schedule_missed = Counter(
            "mcpexec_schedule_missed", "Schedule fires skipped (older than the catch-up window)",
            ["tenant"], registry=r,
        )  # fmt: skip
        self.workflow_steps = Counter(
            "mcpexec_workflow_steps", "Workflow steps finished, by status",
            ["tenant", "workflow", "status"], registry=r,
        )  # fmt: skip
        self.spool_jobs = Counter(
            "mcpexec_spool_jobs", "Spool jobs finished (their result file written), by status",
            ["status"], registry=r,
        )  # fmt: skip
        self.sandbox_degraded = Counter(
            "mcpexec_sandbox_degraded", "Attempts run with less isolation than the sandbox "
            "asks for, by what was missing", ["missing"], registry=r,
        )  # fmt: skip
        self._store = _StoreCollector()
        r.register(self._store)
        #: Spans of runs and attempts (off unless configured); the worker and every path
        #: that finishes a run reach it through here, as they reach the counters.
        self.tracing = Tracing()

    # -- events -------------------------------------------------------------------------------
    def submitted(self, run: Run) -> None:
        self.runs_submitted.labels(run.tenant, run.spec.kind).inc()

    def started(self, run: Run, attempt: int, now: datetime) -> None:
        """An attempt started; the first one ends the run's queue wait."""
        if attempt == 1:
            due = run.run_at or run.created_at
            self.queue_wait.labels(run.tenant).observe(max((now - due).total_seconds(), 0.0))

    def attempt_finished(
        self, run: Run, failure: Failure | None, isolation: str | None = None
    ) -> None:
        """An attempt of ``run`` (as the store has it now, after the report) ended, run with
        ``isolation`` (the executor's description) when it ran here."""
        for missing in degradations(isolation or ""):
            self.sandbox_degraded.labels(missing).inc()
        kind = run.spec.kind
        outcome = "succeeded" if failure is None else failure.kind.value
        self.attempts.labels(run.tenant, kind, outcome).inc()
        if run.status is RunStatus.PENDING:
            self.retries.labels(run.tenant, kind).inc()
        elif run.terminal:
            self.finished(run)

    def workflow_step(self, tenant: str, workflow: str, status: str) -> None:
        self.workflow_steps.labels(tenant, workflow, status).inc()

    def spool_job(self, status: str) -> None:
        self.spool_jobs.labels(status).inc()

    def finished(self, run: Run) -> None:
        self.tracing.run_finished(run)
        kind, status = run.spec.kind, run.status.value
        self.runs_finished.labels(run.tenant, kind, status).inc()
        if run.status is RunStatus.FAILED and run.failure is not None:
            self.run_failures.labels(run.tenant, kind, run.failure.kind.value).inc()
        if run.started_at is not None and run.finished_at is not None:
            seconds = max((run.finished_at - run.started_at).total_seconds(), 0.0)
            self.run_duration.labels(run.tenant, kind, status).observe(seconds)

    def tool_call(self, qualified: str, status: str, seconds: float) -> None:
        server, _, tool = qualified.partition(".")
        self.tool_calls.labels(server, tool, status).inc()
        self.tool_call_duration.labels(server, tool).observe(seconds)

    def fired(self, tenant: str, runs: int, missed: int) -> None:
        if runs:
            self.schedule_fires.labels(tenant).inc(runs)
        if missed:
            self.schedule_missed.labels(tenant).inc(missed)

    # -- scrape -------------------------------------------------------------------------------
    def exposition(self, gauges: StoreGauges) -> bytes:
        """The text format of everything, with ``gauges`` as the store's values."""
        self._store.gauges = gauges
        try:
            return generate_latest(self.registry)
        finally:
            self._store.gauges = None
