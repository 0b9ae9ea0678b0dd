"""``/metrics`` after a known workload on a real ``serve``: counters, histograms and the store's
gauges, read back with prometheus-client's own parser (issue 17)."""

from __future__ import annotations

import re
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from mcpexec.client import Client

from .conftest import MCPEXEC, Server, free_port, make_server


def scrape(
    server: Server, token: str | None
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = httpx.get(f"{server.url}/metrics", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(answer.text):  # raises on a malformed text
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_a_known_workload(server: Server, client: Client) -> None:
    ok = [client.submit({"shell": "true"}) for _ in range(3)]
    again = client.submit({"shell": "true"}, idempotency_key="k1")
    assert client.submit({"shell": "true"}, idempotency_key="k1")["id"] == again["id"]
    failing = client.submit({"shell": "exit 2", "retry": {"max_attempts": 2, "delay_s": 0.0}})
    later = datetime.now(UTC) + timedelta(hours=1)
    waiting = client.submit({"command": ["true"], "run_at": later.isoformat()})
    for run in [*ok, again, failing]:
        assert client.wait(run["id"], timeout_s=60)["status"] in ("completed", "failed")

    before = scrape(server, server.token)
    assert value(before, "mcpexec_queue_depth", tenant="default") == 1
    assert value(before, "mcpexec_running", tenant="default") == 0
    assert value(before, "mcpexec_runs", status="pending") == 1
    assert value(before, "mcpexec_workers_alive") >= 1
    assert value(before, "mcpexec_worker_slots") == server.workers

    client.cancel(waiting["id"])
    samples = scrape(server, server.token)
    submitted = value(samples, "mcpexec_runs_submitted_total", tenant="default", kind="shell")
    assert submitted == 5  # the idempotent repeat is not a new run
    assert value(samples, "mcpexec_runs_submitted_total", tenant="default", kind="command") == 1
    finished = {"tenant": "default", "kind": "shell"}
    assert value(samples, "mcpexec_runs_finished_total", **finished, status="completed") == 4
    assert value(samples, "mcpexec_runs_finished_total", **finished, status="failed") == 1
    cancelled = {"tenant": "default", "kind": "command", "status": "cancelled"}
    assert value(samples, "mcpexec_runs_finished_total", **cancelled) == 1
    failures = {**finished, "failure_kind": "exit_code"}
    assert value(samples, "mcpexec_run_failures_total", **failures) == 1
    assert value(samples, "mcpexec_attempts_total", **finished, outcome="succeeded") == 4
    assert value(samples, "mcpexec_attempts_total", **finished, outcome="exit_code") == 2
    assert value(samples, "mcpexec_retries_total", **finished) == 1
    # histograms: one observation per run (queue wait: per first attempt)
    assert value(samples, "mcpexec_queue_wait_seconds_count", tenant="default") == 5
    done = {**finished, "status": "completed"}
    assert value(samples, "mcpexec_run_duration_seconds_count", **done) == 4
    assert value(samples, "mcpexec_run_duration_seconds_bucket", **done, le="+Inf") == 4
    assert value(samples, "mcpexec_queue_depth", tenant="default") == 0
    assert value(samples, "mcpexec_runs", status="completed") == 4
    assert value(samples, "mcpexec_runs", status="cancelled") == 1


def test_metrics_need_an_admin_token_unless_opened(server: Server) -> None:
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    with server.client() as admin:
        viewer = admin.create_token("looker", role="viewer")["token"]
    refused = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {viewer}"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    # /metrics is not a JSON API: it is not in the OpenAPI document
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    assert "/metrics" not in paths
    assert not [p for p in paths if p.startswith("/ui")]  # the dashboard is no JSON API


def test_metrics_public_setting_opens_the_endpoint(tmp_path: Path) -> None:
    srv = make_server(tmp_path, workers=1, MCPEXEC_METRICS_PUBLIC="true")
    srv.start()
    try:
        samples = scrape(srv, None)
        assert value(samples, "mcpexec_worker_slots") == 1
        # the rest of the API still needs its token
        assert httpx.get(f"{srv.url}/api/v1/runs").status_code == 401
    finally:
        srv.stop()


def test_every_metric_the_docs_and_the_grafana_dashboard_name_exists(server: Server) -> None:
    text = httpx.get(
        f"{server.url}/metrics", headers={"Authorization": f"Bearer {server.token}"}
    ).text
    known = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.MULTILINE):
        known.add(name)
        if kind == "histogram":
            known |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    docs = Path(__file__).resolve().parents[2] / "docs"
    for doc in ("observability.md", "grafana-dashboard.json"):
        named = set(re.findall(r"\bmcpexec_[a-z_]+[a-z]", (docs / doc).read_text()))
        assert named, doc
        assert named <= known, f"{doc} names metrics /metrics does not have: {named - known}"


def test_a_separate_worker_process_serves_its_own_counters(tmp_path: Path) -> None:
    """Counters are per process: the run a ``mcpexec worker`` executed is counted there (on its
    ``metrics_port``), the store's gauges on ``serve``."""
    srv = make_server(tmp_path, workers=0)
    srv.start()
    port = free_port()
    worker = subprocess.Popen(
        [MCPEXEC, "worker", "--workers", "1"],
        env={**srv.env(), "MCPEXEC_METRICS_PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with srv.client() as client:
            run = client.submit({"shell": "true"})
            assert client.wait(run["id"], timeout_s=60)["status"] == "completed"
        text = ""
        deadline = time.monotonic() + 30
        while "mcpexec_runs_finished_total{" not in text:  # the endpoint may still be starting
            assert time.monotonic() < deadline, "the worker's metrics never answered"
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/", timeout=2).text
            except httpx.TransportError:
                time.sleep(0.05)
        samples = {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        done = {"tenant": "default", "kind": "shell", "status": "completed"}
        assert value(samples, "mcpexec_runs_finished_total", **done) == 1
        on_serve = scrape(srv, srv.token)
        assert value(on_serve, "mcpexec_runs_finished_total", **done) == 0  # not serve's
        assert value(on_serve, "mcpexec_runs_submitted_total", tenant="default", kind="shell") == 1
        assert value(on_serve, "mcpexec_runs", status="completed") == 1  # the store's
    finally:
        worker.terminate()
        worker.wait(30)
        srv.stop()


def test_tool_calls_and_schedule_fires_are_counted(tmp_path: Path) -> None:
    box = tmp_path / "box"
    box.mkdir()
    (box / "note.txt").write_text("a note\n")
    srv = make_server(tmp_path, workers=1, MCPEXEC_SANDBOX_DIRECTORY=str(box))
    srv.start()
    bearer = {"Authorization": f"Bearer {srv.token}"}
    try:
        with httpx.Client(base_url=srv.url, headers=bearer, timeout=60) as http:
            call = {"tool_name": "fs.read_text_file", "arguments": {"path": "note.txt"}}
            assert http.post("/execute", json=call).json()["status"] == "success"
            outside = {"tool_name": "fs.read_text_file", "arguments": {"path": "../x"}}
            assert http.post("/execute", json=outside).json()["status"] == "error"
            unknown = http.post("/execute", json={"tool_name": "nope.nothing"})
            assert unknown.status_code == 404
            assert http.put("/api/v1/tasks/tick", json={"shell": "true"}).is_success
            body = {"task": "tick", "every": "1h", "paused": True}  # fires only when triggered
            made = http.post("/api/v1/schedules", json=body)
            assert made.status_code == 201, made.text
            fired = http.post(f"/api/v1/schedules/{made.json()['id']}/trigger")
            assert fired.is_success, fired.text
        samples = scrape(srv, srv.token)
    finally:
        srv.stop()
    read = {"server": "fs", "tool": "read_text_file"}
    assert value(samples, "mcpexec_tool_calls_total", **read, status="success") == 1
    assert value(samples, "mcpexec_tool_calls_total", **read, status="error") == 1
    assert value(samples, "mcpexec_tool_call_duration_seconds_count", **read) == 2
    lost = {"server": "unknown", "tool": "unknown", "status": "unknown_tool"}
    assert value(samples, "mcpexec_tool_calls_total", **lost) == 1  # no made-up label values
    assert value(samples, "mcpexec_schedule_fires_total", tenant="default") == 1
    assert value(samples, "mcpexec_runs_submitted_total", tenant="default", kind="shell") == 1


def test_oldest_pending_age_and_sandbox_degradations(tmp_path: Path) -> None:
    srv = make_server(tmp_path, workers=2, MCPEXEC_SANDBOX="none")
    srv.start()
    try:
        with srv.client() as admin:
            for _ in range(2):
                admin.wait(admin.submit({"shell": "true"})["id"], 60)
            admin.create_tenant("slow", max_concurrent=1)
            token = admin.create_token("slow-op", role="operator", tenant="slow")["token"]
        with Client(srv.url, token) as slow:
            busy = slow.submit({"shell": "sleep 60"})
            queued = slow.submit({"shell": "true"})
            assert slow.get(queued["id"])["status"] == "pending"  # held by the tenant's cap
            samples = scrape(srv, srv.token)
            assert value(samples, "mcpexec_oldest_pending_age_seconds", tenant="slow") > 0
            default = frozenset({("tenant", "default")})
            assert ("mcpexec_oldest_pending_age_seconds", default) not in samples
            # MCPEXEC_SANDBOX=none: each attempt ran without the sandbox, and says so
            assert value(samples, "mcpexec_sandbox_degraded_total", missing="no sandbox") == 2
            for run in (busy, queued):
                slow.cancel(run["id"])
    finally:
        srv.stop()
