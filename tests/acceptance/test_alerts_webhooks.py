"""Alerts and webhooks on a real ``serve`` configured by its YAML config file (issue 17), against
a real local receiver: a run's ``notify`` is delivered signed; loopback and link-local targets
are refused at submit (403 ``webhook_refused``) unless ``webhook_allow`` names them; a failing
workload crosses the failure-rate threshold → the alert fires once (one delivery), shows in
``GET /api/v1/alerts``, ``mcpexec alerts`` and ``/ui/alerts``, then resolves (one more)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from integration.webhook_receiver import Received, Receiver
from mcpexec.webhooks import SIGNATURE_HEADER, verify

from .conftest import Server, make_server
from .test_dashboard_http import login

pytestmark = pytest.mark.timeout(120)

SECRET = "from-the-environment"


def _of(hits: list[Received], kind: str) -> list[dict[str, object]]:
    bodies = [json.loads(h.body) for h in hits]
    return [b for b in bodies if str(b["type"]).startswith(kind)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rx = Receiver(0).start()
    yield rx
    rx.stop()


@pytest.fixture
def srv(tmp_path: Path, receiver: Receiver) -> Iterator[Server]:
    server = make_server(tmp_path, workers=2, MCPEXEC_SANDBOX="none", HOOK_SECRET=SECRET)
    (server.home / "config.yaml").write_text(
        f"""
webhook_secret: ${{HOOK_SECRET}}
webhook_allow: ["*", "127.0.0.1"]
webhook_retry_s: 0.1
webhook_poll_s: 0.2
alert_interval_s: 0.2
alerts:
  - name: failing-runs
    kind: failure_rate
    threshold: 0.5
    min_runs: 2
    window_s: 600
    webhook: {receiver.url}
"""
    )
    server.start()
    yield server
    server.stop()


def test_webhooks_and_an_alert_that_fires_once_and_resolves(
    srv: Server, receiver: Receiver
) -> None:
    with srv.client() as client:
        notify = {"webhook": receiver.url, "on": ["failed"]}
        runs = [client.submit({"shell": "exit 1", "notify": notify})["id"] for _ in range(2)]
        for run_id in runs:
            assert client.wait(run_id, 60)["status"] == "failed"
        hits = receiver.wait_until(lambda got: len(_of(got, "alert.firing")) >= 1)
        assert {b["run_id"] for b in _of(hits, "run.failed")} <= set(runs)
        hits = receiver.wait_until(lambda got: len(_of(got, "run.failed")) >= 2)
        for hit in hits:
            assert verify(SECRET, hit.headers[SIGNATURE_HEADER], hit.body)
        [firing] = _of(hits, "alert.firing")
        assert (firing["rule"], firing["subject"], firing["value"]) == (
            "failing-runs",
            "default",
            1.0,
        )
        answer = client.alerts()
        assert answer["firing"] == 1
        assert answer["alerts"][0]["state"] == "firing"
        printed = srv.cli("alerts")
        assert printed.returncode == 0, printed.stderr
        assert printed.stdout.startswith("FIRING    failing-runs/default")
        with login(srv, srv.token) as ui:
            page = ui.get("/ui/alerts")
            assert page.status_code == 200
            assert "FIRING" in page.text
            assert "2 of 2 runs of tenant default failed" in page.text
        # Recovery: 2 failed of 5 is under the threshold.
        ok = [client.submit({"shell": "exit 0"})["id"] for _ in range(3)]
        for run_id in ok:
            assert client.wait(run_id, 60)["status"] == "completed"
        hits = receiver.wait_until(lambda got: len(_of(got, "alert.resolved")) >= 1)
        assert client.alerts("firing") == {"alerts": [], "firing": 0}
        assert client.alerts()["alerts"][0]["state"] == "resolved"
    assert len(_of(receiver.received, "alert.")) == 2  # fired once, resolved once
    assert len(_of(receiver.received, "run.")) == 2  # only the failures notified
    assert SECRET not in srv.log()


def test_private_targets_are_refused_at_submit(srv: Server) -> None:
    headers = {"Authorization": f"Bearer {srv.token}"}
    with httpx.Client(base_url=srv.url, headers=headers, timeout=30) as http:
        for url in ("http://127.0.0.2:9/x", "http://169.254.169.254/", "http://[::1]/x"):
            answer = http.post("/api/v1/runs", json={"shell": "true", "notify": {"webhook": url}})
            assert answer.status_code == 403, answer.text
            assert answer.json()["error"]["code"] == "webhook_refused"
        bad = http.post("/api/v1/runs", json={"shell": "true", "notify": {"webhook": "ftp://x/y"}})
        assert bad.status_code == 422
    printed = srv.cli("submit", "--notify-webhook", "http://10.0.0.1/x", "--", "true")
    assert printed.returncode != 0
    assert "webhook_refused" in printed.stderr or "webhook_allow" in printed.stderr
    printed = srv.cli("submit", "--notify-on", "failed", "--", "true")
    assert printed.returncode != 0
    assert "--notify-webhook" in printed.stderr
