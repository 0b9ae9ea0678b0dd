"""OpenTelemetry traces on a real ``serve`` exporting by OTLP/HTTP to a local receiver (the
protobuf decoded with opentelemetry-proto): a submit's ``traceparent`` is continued, the run
and its attempts are spans of that trace, and the run's process sees its attempt's span."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from integration.webhook_receiver import Received, Receiver

from .conftest import make_server

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


def _spans(received: list[Received]) -> list[Any]:
    spans = []
    for post in received:
        request = ExportTraceServiceRequest()
        request.ParseFromString(post.body)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                spans.extend(scope.spans)
    return spans


def _submit(url: str, token: str, body: dict[str, Any], traceparent: str | None) -> str:
    headers = {"Authorization": f"Bearer {token}"}
    if traceparent:
        headers["traceparent"] = traceparent
    answer = httpx.post(f"{url}/api/v1/runs", json=body, headers=headers, timeout=30)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def test_runs_and_attempts_are_spans_of_the_callers_trace(tmp_path: Path) -> None:
    receiver = Receiver(port=0).start()
    srv = make_server(
        tmp_path, workers=1, MCPEXEC_OTEL_ENDPOINT=f"http://127.0.0.1:{receiver.port}/v1/traces"
    )
    srv.start()
    try:
        with srv.client() as client:
            retried = {"shell": 'echo "$TRACEPARENT"; exit 1',
                       "retry": {"max_attempts": 2, "delay_s": 0.0}}  # fmt: skip
            run_id = _submit(srv.url, srv.token, retried, TRACEPARENT)
            assert client.wait(run_id, 60)["status"] == "failed"
            seen = client.logs(run_id)["data"].split()
            fresh = _submit(srv.url, srv.token, {"shell": "true"}, None)  # no caller: new trace
            assert client.wait(fresh, 60)["status"] == "completed"
    finally:
        srv.stop()  # the last spans are exported at shutdown
        receiver.stop()
    spans = _spans(receiver.received)
    mine = [s for s in spans if s.trace_id.hex() == CALLER_TRACE]
    [run] = [s for s in mine if s.name == "mcpexec.run"]
    attempts = sorted((s for s in mine if s.name == "mcpexec.attempt"),
                      key=lambda s: s.start_time_unix_nano)  # fmt: skip
    assert run.parent_span_id.hex() == CALLER_SPAN
    assert run.status.code == 2  # ERROR: the run failed
    assert len(attempts) == 2
    assert {a.parent_span_id.hex() for a in attempts} == {run.span_id.hex()}
    assert run.start_time_unix_nano <= attempts[0].start_time_unix_nano
    assert attempts[-1].end_time_unix_nano <= run.end_time_unix_nano
    # each attempt's process saw its own span as TRACEPARENT
    assert seen == [f"00-{CALLER_TRACE}-{a.span_id.hex()}-01" for a in attempts]
    other = [s for s in spans if s.trace_id.hex() != CALLER_TRACE]
    assert sorted(s.name for s in other) == ["mcpexec.attempt", "mcpexec.run"]
    assert len({s.trace_id for s in other}) == 1


def test_without_an_exporter_the_callers_traceparent_reaches_the_process(tmp_path: Path) -> None:
    srv = make_server(tmp_path, workers=1)
    srv.start()
    try:
        with srv.client() as client:
            run_id = _submit(srv.url, srv.token, {"shell": 'echo "$TRACEPARENT"'}, TRACEPARENT)
            client.wait(run_id, 60)
            assert client.logs(run_id)["data"].strip() == TRACEPARENT
            bad = _submit(srv.url, srv.token, {"shell": 'echo "[$TRACEPARENT]"'}, "00-zz-1-01")
            client.wait(bad, 60)
            assert client.logs(bad)["data"].strip() == "[]"  # an invalid one is dropped
    finally:
        srv.stop()
