"""Workflows on a live ``mcpexec serve``: the CLI session, REST errors and access, and a serve
crash mid-workflow that the workflow survives (issue 16; seed 004)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from workflow_helpers import pipeline

from .conftest import Server, make_server

pytestmark = pytest.mark.timeout(180)


def serve(tmp_path: Path) -> Server:
    srv = make_server(tmp_path, workers=4, MCPEXEC_SANDBOX="none")
    srv.start()
    return srv


def http(server: Server, token: str | None = None) -> httpx.Client:
    return httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {token or server.token}"},
        timeout=60,
    )


def wait_status(h: httpx.Client, run_id: str, check: Any, timeout_s: float = 60.0) -> Any:
    """Poll (bounded) across the process boundary: there is no event to await here."""
    predicate = check if callable(check) else (lambda r: r["status"] == check)
    deadline = time.monotonic() + timeout_s
    while True:
        answer = h.get(f"/api/v1/workflow-runs/{run_id}")
        assert answer.status_code == 200, answer.text
        found = answer.json()
        if predicate(found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{run_id}: {found}")
        time.sleep(0.1)


def test_cli_session_rest_errors_and_access(tmp_path: Path) -> None:
    srv = serve(tmp_path)
    try:
        definition = tmp_path / "pipeline.yaml"
        definition.write_text(pipeline())
        defined = srv.cli("workflows", "define", "-f", str(definition))
        assert defined.returncode == 0, defined.stderr
        assert defined.stdout.startswith("pipeline@1 (created)")
        started = srv.cli("workflows", "start", "pipeline", "-p", "feature=test-auth")
        assert started.returncode == 0, started.stderr
        run_id = started.stdout.strip()
        with http(srv) as h:
            wait_status(h, run_id, "completed")
        status = srv.cli("workflows", "status", run_id)
        assert status.returncode == 0
        assert "completed" in status.stdout.splitlines()[0]
        assert "verifier" in status.stdout
        events = srv.cli("workflows", "events", run_id, "--json")
        assert events.returncode == 0, events.stderr
        kinds = [json.loads(line)["kind"] for line in events.stdout.splitlines()]
        assert kinds[0] == "queued"
        assert kinds[-1] == "completed"
        listed = srv.cli("workflows", "list", "--runs")
        assert run_id in listed.stdout

        for evil in ("'; rm -rf /; #", "../../../etc/passwd", "feature-${EVIL_VAR}"):
            refused = srv.cli("workflows", "start", "pipeline", "-p", f"feature={evil}")
            assert refused.returncode != 0
            assert "feature" in refused.stderr
            assert "Traceback" not in refused.stderr
            assert len(refused.stderr.strip().splitlines()) == 1
        with http(srv) as h:
            runs = h.get("/api/v1/workflow-runs").json()["workflow_runs"]
            assert [r["id"] for r in runs] == [run_id]  # nothing else was started

            # an unknown step of a run that exists: 409 naming it (a 404 would say the run is gone)
            unknown = h.post(f"/api/v1/workflow-runs/{run_id}/skip", json={"step": "nosuch"})
            assert unknown.status_code == 409
            assert unknown.json()["error"]["code"] == "step_not_found"
            assert "'nosuch'" in unknown.json()["error"]["message"]

            cycle = (
                "name: bad\nsteps:\n  a: {needs: [b], shell: 'true'}\n"
                "  b: {needs: [a], shell: 'true'}\n"
            )
            answer = h.post(
                "/api/v1/workflows", content=cycle, headers={"Content-Type": "application/yaml"}
            )
            assert answer.status_code == 422
            error = answer.json()["error"]
            assert error["code"] == "invalid_request"
            assert "cycle" in error["message"]
            assert error["details"]["line"] == 3

            assert h.post("/api/v1/tenants", json={"id": "other"}).status_code == 201
            made = h.post(
                "/api/v1/tokens", json={"name": "o", "role": "operator", "tenant": "other"}
            )
            other = made.json()["token"]
        with http(srv, other) as o:
            assert o.get(f"/api/v1/workflow-runs/{run_id}").status_code == 404
            assert o.post(f"/api/v1/workflow-runs/{run_id}/cancel").status_code == 404
            assert o.get(f"/api/v1/workflow-runs/{run_id}/events").status_code == 404
            assert o.get("/api/v1/workflow-runs").json()["workflow_runs"] == []
            assert o.get("/api/v1/workflows/pipeline").status_code == 404
    finally:
        srv.stop()


def test_a_serve_crash_mid_workflow_resumes_from_the_stored_state(tmp_path: Path) -> None:
    srv = serve(tmp_path)
    try:
        with http(srv) as h:
            text = pipeline(modes={"tester": "slow"})
            answer = h.post(
                "/api/v1/workflows", content=text, headers={"Content-Type": "application/json"}
            )
            assert answer.status_code == 201, answer.text
            start = {"workflow": "pipeline", "params": {"feature": "crash-me"}}
            run_id = h.post("/api/v1/workflow-runs", json=start).json()["id"]
            running = wait_status(h, run_id, lambda r: r["steps"]["tester"]["status"] == "running")
        assert srv.stop(signal.SIGKILL) == -signal.SIGKILL
        workspace = Path(running["workspace"])
        (workspace / ".fake-agent").mkdir(exist_ok=True)
        (workspace / ".fake-agent/tester.go").touch()
        srv.start()
        with http(srv) as h:
            done = wait_status(h, run_id, "completed", timeout_s=90)
            events = h.get(f"/api/v1/workflow-runs/{run_id}/events").json()["events"]
        steps = done["steps"]
        assert len(steps["init"]["runs"]) == 1  # what was done before the crash stays done
        assert len(steps["orchestrator"]["runs"]) == 1
        assert steps["verifier"]["checkpoint"]["status"] == "complete"
        assert [e["kind"] for e in events].count("started") == 1
    finally:
        srv.stop()
