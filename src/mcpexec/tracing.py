"""OpenTelemetry traces (issue 17): off unless ``otel_endpoint`` names an OTLP/HTTP traces
endpoint; a ``traceparent`` is carried through either way.

A run's trace context is fixed at submit and kept with the run as its label ``mcp/trace``
(mcpexec's own: a rerun does not inherit it): ``<traceparent of the run span>`` plus, when
the submit continued a caller's trace, ``;<the caller's span id>``. The run span's id is
minted then, before the span exists, so that every process can parent to it:

- each attempt is a span ``mcpexec.attempt`` (child of the run span), started and ended by
  the worker that runs it; the run's process sees ``TRACEPARENT`` naming that attempt span;
- the run itself is a span ``mcpexec.run`` (child of the caller's span, if any) from
  ``created_at`` to ``finished_at``, written with the minted id by the process that sees the
  run finish.

With tracing off the process sees the caller's ``traceparent`` unchanged (propagation only).
The SDK is imported only when tracing is on (a stdio ``mcpexec mcp`` starts without it).
"""

from __future__ import annotations

import contextvars
import logging
import re
import secrets
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mcpexec.models import TRACE_LABEL, Run, RunStatus

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)

__all__ = ["TRACE_LABEL", "AttemptSpan", "Tracing", "parse_traceparent"]
#: W3C Trace Context, version 00: trace id, parent id, flags; all-zero ids are invalid.
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")

#: The ids the next span gets (the run span's minted ids); empty: random.
_next_ids: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "mcpexec_next_span_ids", default=None
)


def parse_traceparent(value: str | None) -> tuple[str, str, str] | None:
    """``(trace id, span id, flags)`` of a valid W3C ``traceparent``, else ``None`` (an
    invalid one is ignored, as the spec asks: a new trace starts)."""
    if value is None:
        return None
    found = _TRACEPARENT.match(value.strip().lower())
    if found is None or set(found.group(1)) == {"0"} or set(found.group(2)) == {"0"}:
        return None
    return found.group(1), found.group(2), found.group(3)


def _ns(value: datetime) -> int:
    return int(value.timestamp() * 1_000_000) * 1000


class Tracing:
    """The traces of one process; ``enabled`` only with an exporter."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self._provider = provider
        self._tracer: Any = None if provider is None else provider.get_tracer("mcpexec")

    @property
    def enabled(self) -> bool:
        return self._provider is not None

    @classmethod
    def from_endpoint(cls, endpoint: str | None, service: str = "mcpexec") -> Tracing:
        """Export by OTLP/HTTP to ``endpoint`` (``…/v1/traces``), in batches."""
        if not endpoint:
            return cls()
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

        class _MintedIds(RandomIdGenerator):
            # The run span is written late with the ids minted at submit.
            def generate_span_id(self) -> int:
                ids = _next_ids.get()
                return ids[1] if ids else super().generate_span_id()

            def generate_trace_id(self) -> int:
                ids = _next_ids.get()
                return ids[0] if ids else super().generate_trace_id()

        provider = TracerProvider(
            resource=Resource.create({"service.name": service}), id_generator=_MintedIds()
        )
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        return cls(provider)

    def shutdown(self) -> None:
        """Export what is buffered, then stop (bounded by the SDK's own timeouts)."""
        if self._provider is not None:
            self._provider.shutdown()

    # -- submit ---------------------------------------------------------------------------------
    def run_label(self, traceparent: str | None) -> str | None:
        """The ``mcp/trace`` label of a run submitted with ``traceparent`` (may be ``None``)."""
        caller = parse_traceparent(traceparent)
        if not self.enabled:
            return None if caller is None else f"00-{caller[0]}-{caller[1]}-{caller[2]}"
        trace_id = caller[0] if caller else secrets.token_hex(16)
        run_span = secrets.token_hex(8)
        label = f"00-{trace_id}-{run_span}-01"
        return label if caller is None else f"{label};{caller[1]}"

    # -- attempts -------------------------------------------------------------------------------
    def start_attempt(self, run: Run, attempt: int) -> AttemptSpan:
        """The span of one attempt, started now; ``AttemptSpan.traceparent`` is what the
        process sees; ``AttemptSpan.end`` when the attempt has ended."""
        own = (run.labels.get(TRACE_LABEL) or "").split(";")[0]
        parent = parse_traceparent(own)
        if self._tracer is None or parent is None:
            return AttemptSpan(None, own if parent else None)
        from opentelemetry import trace

        context = trace.set_span_in_context(trace.NonRecordingSpan(_context_of(*parent)))
        attributes = {"mcpexec.run_id": run.id, "mcpexec.tenant": run.tenant,
                      "mcpexec.attempt": attempt, "mcpexec.kind": run.spec.kind}  # fmt: skip
        span = self._tracer.start_span("mcpexec.attempt", context=context, attributes=attributes)
        ctx = span.get_span_context()
        return AttemptSpan(span, f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01")

    # -- runs -----------------------------------------------------------------------------------
    def run_finished(self, run: Run) -> None:
        """Write the run's span (its minted ids, from ``created_at`` to ``finished_at``)."""
        label = run.labels.get(TRACE_LABEL)
        if self._tracer is None or not label or run.finished_at is None:
            return
        own, _, caller_span = label.partition(";")
        ids = parse_traceparent(own)
        if ids is None:
            return
        from opentelemetry import trace

        context = None
        if caller_span:
            caller = _context_of(ids[0], caller_span, "01")
            context = trace.set_span_in_context(trace.NonRecordingSpan(caller))
        token = _next_ids.set((int(ids[0], 16), int(ids[1], 16)))
        try:
            span = self._tracer.start_span(
                "mcpexec.run",
                context=context,
                start_time=_ns(run.created_at),
                attributes={
                    "mcpexec.run_id": run.id,
                    "mcpexec.tenant": run.tenant,
                    "mcpexec.status": run.status.value,
                    "mcpexec.attempts": run.attempts,
                },
            )
        finally:
            _next_ids.reset(token)
        if run.status is RunStatus.FAILED:
            span.set_status(trace.Status(trace.StatusCode.ERROR, _failure(run)))
        span.end(end_time=_ns(run.finished_at))


class AttemptSpan:
    """An attempt's span (``None`` when tracing is off) and the process' ``TRACEPARENT``."""

    def __init__(self, span: Any, traceparent: str | None) -> None:
        self.span = span
        self.traceparent = traceparent

    def end(self, failure: str | None, at: datetime | None = None) -> None:
        """End the span at ``at`` (the attempt's recorded end; default now), once (later calls
        do nothing); an error when ``failure`` is given."""
        span, self.span = self.span, None
        if span is None:
            return
        from opentelemetry import trace

        if failure is not None:
            span.set_status(trace.Status(trace.StatusCode.ERROR, failure))
        span.end(end_time=None if at is None else _ns(at))


def _failure(run: Run) -> str:
    return run.failure.kind.value if run.failure is not None else "failed"


def _context_of(trace_id: str, span_id: str, flags: str) -> Any:
    from opentelemetry.trace import SpanContext, TraceFlags

    return SpanContext(
        trace_id=int(trace_id, 16),
        span_id=int(span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(int(flags, 16)),
    )
