"""Tasks and schedules on a live ``mcpexec serve``: the issue's CLI session, REST, a
seconds-level schedule in real time, and two serve processes on one store."""

from __future__ import annotations

import itertools
import json
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from mcpexec.client import Client

from .conftest import MCPEXEC, Server, free_port, make_server

pytestmark = pytest.mark.timeout(120)

REPORT = """\
description: The report of a day
shell: echo "report for $MCPEXEC_PARAM_DAY"
params:
  type: object
  properties: {day: {type: string, format: date}}
  required: [day]
"""


def schedule_runs(client: Client, schedule_id: str) -> list[dict[str, Any]]:
    page = client.list_runs(label=f"schedule={schedule_id}", limit=500)
    return sorted(page["runs"], key=lambda r: r["created_at"])


def wait_for_runs(
    client: Client, schedule_id: str, count: int, timeout_s: float = 30.0
) -> list[dict[str, Any]]:
    """Poll (bounded) until the schedule has ``count`` finished runs: there is no event to
    await across the process boundary, and the fires come at their own pace."""
    deadline = time.monotonic() + timeout_s
    while True:
        runs = schedule_runs(client, schedule_id)
        done = [r for r in runs if r["status"] in ("completed", "failed", "cancelled")]
        if len(done) >= count:
            return runs
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(done)} of {count} runs after {timeout_s}s: {runs}")
        time.sleep(0.2)


def when(key: str) -> datetime:
    return datetime.fromisoformat(key.replace("Z", "+00:00"))


def test_the_cli_session_of_the_issue(server: Server, tmp_path: Path) -> None:
    v1, v2 = tmp_path / "report.yaml", tmp_path / "report-v2.yaml"
    v1.write_text(REPORT)
    v2.write_text(REPORT.replace("report for", "report (v2) for"))

    first = server.cli("tasks", "define", "nightly-report", "-f", str(v1))
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("nightly-report@1 (created)")
    same = server.cli("tasks", "define", "nightly-report", "-f", str(v1))
    assert same.stdout.startswith("nightly-report@1 (unchanged)")
    second = server.cli("tasks", "define", "nightly-report", "-f", str(v2))
    assert second.stdout.startswith("nightly-report@2 (created)")
    diff = server.cli("tasks", "show", "nightly-report", "--diff", "1", "2")
    assert '-shell: echo "report for $MCPEXEC_PARAM_DAY"' in diff.stdout.splitlines()
    assert '+shell: echo "report (v2) for $MCPEXEC_PARAM_DAY"' in diff.stdout.splitlines()
    listed = server.cli("tasks", "list")
    assert "nightly-report" in listed.stdout
    assert " 2 " in listed.stdout

    ran = server.cli("run", "--task", "nightly-report", "--param", "day=2026-12-01", "--json")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("report (v2) for 2026-12-01\n")
    run = json.loads(ran.stdout.split("\n", 1)[1])
    assert (run["task"], run["task_version"]) == ("nightly-report", 2)
    bad = server.cli("run", "--task", "nightly-report", "--param", "day=someday")
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1
    assert "'day'" in bad.stderr
    assert "Traceback" not in bad.stderr

    created = server.cli(
        "schedules", "create", "nightly-report", "--cron", "0 3 * * *", "--tz", "Europe/Berlin",
        "--overlap", "skip", "--param", "day=2026-12-01", "--json",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    schedule = json.loads(created.stdout)
    sid = schedule["id"]
    nxt = server.cli("schedules", "next", sid, "-n", "5")
    times = [datetime.fromisoformat(line) for line in nxt.stdout.splitlines()]
    assert len(times) == 5
    assert all((t.hour, t.minute) == (3, 0) for t in times)
    assert all(b - a == timedelta(days=1) for a, b in itertools.pairwise(times))
    assert all(t.utcoffset() in (timedelta(hours=1), timedelta(hours=2)) for t in times)

    paused = server.cli("schedules", "pause", sid, "--json")
    assert json.loads(paused.stdout)["next_fire_at"] is None
    resumed = server.cli("schedules", "resume", sid, "--json")
    assert json.loads(resumed.stdout)["next_fire_at"] == schedule["next_fire_at"]
    triggered = server.cli("schedules", "trigger", sid)
    run_id = triggered.stdout.strip()
    with server.client() as client:
        done = client.wait(run_id, 30)
    assert done["status"] == "completed"
    assert done["labels"]["schedule"] == sid
    history = server.cli("schedules", "history", sid)
    lines = history.stdout.splitlines()
    assert lines[0].split() == ["SCHEDULED", "FOR", "OUTCOME", "RUN", "STATUS", "DURATION"]
    assert lines[1].split()[1:4] == ["manual", run_id, "completed"]
    table = server.cli("schedules", "list")
    assert sid in table.stdout
    assert "0 3 * * *" in table.stdout
    assert server.cli("schedules", "delete", sid).returncode == 0
    gone = server.cli("schedules", "show", sid)
    assert gone.returncode == 1
    assert "schedule_not_found" in gone.stderr


def test_rest_tasks_and_schedules(server: Server) -> None:
    headers = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.url, headers=headers) as http:
        body = {
            "shell": "echo $MCPEXEC_PARAM_N",
            "params": {"type": "object", "properties": {"n": {"type": "integer"}}},
        }
        created = http.put("/api/v1/tasks/count", json=body)
        assert created.status_code == 201
        assert created.headers["location"] == "/api/v1/tasks/count/versions/1"
        assert http.put("/api/v1/tasks/count", json=body).status_code == 200
        yaml_body = (
            "shell: echo v2 $MCPEXEC_PARAM_N\n"
            "params: {type: object, properties: {n: {type: integer}}}\n"
        )
        v2 = http.put(
            "/api/v1/tasks/count", content=yaml_body, headers={"Content-Type": "application/yaml"}
        )
        assert (v2.status_code, v2.json()["version"]) == (201, 2)
        broken = http.put(
            "/api/v1/tasks/count",
            content="shell: [1, 2\n",
            headers={"Content-Type": "application/yaml"},
        )
        assert broken.status_code == 422
        assert broken.json()["error"]["code"] == "invalid_request"
        assert (
            http.get("/api/v1/tasks/count/versions/1").json()["definition"]["shell"]
            == "echo $MCPEXEC_PARAM_N"
        )
        assert len(http.get("/api/v1/tasks/count/versions").json()["versions"]) == 2
        assert http.get("/api/v1/tasks/count/diff", params={"from": 1, "to": 2}).json()["diff"]
        assert http.get("/api/v1/tasks/nope").status_code == 404
        doc = http.get("/openapi.json").json()["paths"]
        put = doc["/api/v1/tasks/{name}"]["put"]
        assert put["requestBody"]["required"] is True
        assert set(put["requestBody"]["content"]) == {"application/json", "application/yaml"}
        assert {"200", "201"} <= set(put["responses"])
        (name,) = (p for p in put["parameters"] if p["name"] == "name")
        assert name["schema"]["pattern"].startswith("^[a-z0-9]")
        assert http.get("/api/v1/tasks/Not-A-Name").status_code == 422

        bad = http.post("/api/v1/runs", json={"task": "count", "params": {"n": "three"}})
        assert bad.status_code == 422
        assert bad.json()["error"]["details"]["param"] == "n"
        both = http.post("/api/v1/runs", json={"task": "count", "shell": "echo x"})
        assert both.status_code == 422
        first = http.post("/api/v1/runs", json={"task": "count", "params": {"n": 3}})
        assert first.status_code == 202
        assert "estimated_duration_ms" not in first.json()
        done = http.get(f"/api/v1/runs/{first.json()['id']}", params={"wait": 30}).json()
        assert (done["status"], done["task_version"], done["params"]) == ("completed", 2, {"n": 3})
        later = http.post("/api/v1/runs", json={"task": "count", "params": {"n": 4}}).json()
        assert later["estimated_duration_ms"] >= 0
        rerun = http.post(f"/api/v1/runs/{first.json()['id']}/rerun").json()
        assert (rerun["task_version"], rerun["params"]) == (2, {"n": 3})
        http.post("/api/v1/runs", json={"shell": "echo not a task"}).raise_for_status()
        listed = http.get("/api/v1/runs", params={"task": "count"}).json()["runs"]
        assert {r["id"] for r in listed} == {first.json()["id"], later["id"], rerun["id"]}

        sched = http.post(
            "/api/v1/schedules", json={"task": "count@1", "every": "1h", "params": {"n": 1}}
        )
        assert sched.status_code == 201
        sid = sched.json()["id"]
        assert sched.json()["task_version"] == 1
        assert len(http.get(f"/api/v1/schedules/{sid}/next", params={"n": 3}).json()["next"]) == 3
        patched = http.patch(f"/api/v1/schedules/{sid}", json={"cron": "*/5 * * * *"}).json()
        assert (patched["cron"], patched.get("every")) == ("*/5 * * * *", None)
        refused = http.patch(f"/api/v1/schedules/{sid}", json={"timezone": "Nowhere/City"})
        assert refused.status_code == 422
        assert refused.json()["error"]["details"]["field"] == "timezone"
        kept = http.patch(f"/api/v1/schedules/{sid}", json={"every": None, "paused": True})
        assert (kept.json()["cron"], kept.json()["paused"]) == ("*/5 * * * *", True)
        for change, field in (({"surprise": 1}, "surprise"), ({"task": "other"}, "body")):
            unknown = http.patch(f"/api/v1/schedules/{sid}", json=change)
            assert unknown.status_code == 422, unknown.text
            assert field in json.dumps(unknown.json()["error"]), unknown.text
        assert "cannot change" in unknown.json()["error"]["message"]
        http.post(f"/api/v1/schedules/{sid}/resume").raise_for_status()
        trigger = http.post(f"/api/v1/schedules/{sid}/trigger")
        assert trigger.status_code == 202
        assert (
            http.get(f"/api/v1/schedules/{sid}/history").json()["fires"][0]["outcome"] == "manual"
        )
        assert http.post("/api/v1/tasks/count/archive").json()["archived"] is True
        assert http.get("/api/v1/tasks").json()["tasks"] == []
        assert http.delete(f"/api/v1/schedules/{sid}").status_code == 204
        assert http.get(f"/api/v1/schedules/{sid}").status_code == 404


def test_a_seconds_schedule_on_a_live_serve_fires_at_the_expected_spacing(
    server: Server,
) -> None:
    with server.client() as client:
        TasksRest(client).define("tick", {"shell": "echo tick"})
        schedule = TasksRest(client).schedule(
            {"task": "tick", "every": "1s", "overlap": "allow_all"}
        )
        runs = wait_for_runs(client, schedule["id"], 3)
        TasksRest(client).delete(schedule["id"])
    fires = [when(r["labels"]["scheduled_for"]) for r in runs[:3]]
    assert fires == sorted(fires)  # created in fire order
    assert [b - a for a, b in itertools.pairwise(fires)] == [timedelta(seconds=1)] * 2
    assert all(f.microsecond == 0 for f in fires)  # on the interval's grid
    assert [when(r["run_at"]) for r in runs[:3]] == fires  # jitter 0: at the fire time
    assert all(r["status"] == "completed" for r in runs[:3])


def test_two_serve_processes_on_one_store_fire_each_time_exactly_once(tmp_path: Path) -> None:
    first = make_server(tmp_path, workers=2)
    first.start()
    second = Server(home=first.home, port=free_port(), workers=2)
    second.start()
    try:
        with first.client() as a, second.client() as b:
            TasksRest(a).define("tick", {"shell": "echo tick"})
            # Several schedules due at the same instants: each process works through them one
            # by one, so the two steps overlap and race for the same fires.
            body = {"task": "tick", "every": "1s", "overlap": "allow_all"}
            ids = [TasksRest(a if n % 2 else b).schedule(body)["id"] for n in range(4)]
            for sid in ids:
                wait_for_runs(a, sid, 6)
            for sid in ids:
                TasksRest(a).pause(sid)
            for sid in ids:
                runs = schedule_runs(b, sid)
                fires = TasksRest(b).history(sid)
                per_fire = Counter(r["labels"]["scheduled_for"] for r in runs)
                assert set(per_fire.values()) == {1}, per_fire
                assert len(per_fire) >= 6
                assert sorted(f["run_id"] for f in fires) == sorted(r["id"] for r in runs)
                keys = sorted(per_fire)
                gaps = [when(y) - when(x) for x, y in itertools.pairwise(keys)]
                assert gaps == [timedelta(seconds=1)] * (len(keys) - 1)  # and none lost
    finally:
        second.stop()
        first.stop()


class TasksRest:
    """The few REST calls these tests make, through the client's HTTP session."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def define(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.client._json("PUT", f"/api/v1/tasks/{name}", json=body)

    def schedule(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.client._json("POST", "/api/v1/schedules", json=body)

    def get(self, sid: str) -> dict[str, Any]:
        return self.client._json("GET", f"/api/v1/schedules/{sid}")

    def pause(self, sid: str) -> dict[str, Any]:
        return self.client._json("POST", f"/api/v1/schedules/{sid}/pause")

    def delete(self, sid: str) -> None:
        self.client._request("DELETE", f"/api/v1/schedules/{sid}")

    def history(self, sid: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.client._json(
            "GET", f"/api/v1/schedules/{sid}/history", params={"limit": 500}
        )["fires"]
        return found


def test_catch_up_after_downtime_by_the_standalone_scheduler(tmp_path: Path) -> None:
    """serve stops; time passes (more periods than the catch-up window); ``mcpexec scheduler``
    alone catches up: the fires within the window get runs, the older ones are counted missed."""
    srv = make_server(tmp_path, workers=2)
    srv.start()
    with srv.client() as client:
        TasksRest(client).define("tick", {"shell": "echo tick"})
        body = {"task": "tick", "every": "1s", "overlap": "allow_all", "catchup_window_s": 3}
        sid = TasksRest(client).schedule(body)["id"]
        wait_for_runs(client, sid, 2)
    srv.stop()
    db = sqlite3.connect(srv.home / "mcpexec.db")
    try:
        before = {r for (r,) in db.execute("SELECT id FROM runs")}
        stopped = db.execute("SELECT handled_until FROM schedules").fetchone()[0]
        # The server is down for 7 periods: there is nothing to await but the clock.
        time.sleep(7)
        # The scheduler decides what is within the window at its own "now", which is later.
        started = datetime.now(UTC)
        proc = subprocess.Popen([MCPEXEC, "scheduler"], env=srv.env(), stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 30
            while db.execute("SELECT missed_count FROM schedules").fetchone()[0] == 0:
                assert time.monotonic() < deadline, "the scheduler did not catch up"
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
            assert proc.stderr is not None
            proc.stderr.close()
    finally:
        db.close()
    srv.start()
    try:
        with srv.client() as client:
            status = TasksRest(client).get(sid)
            runs = [r for r in schedule_runs(client, sid) if r["id"] not in before]
            TasksRest(client).pause(sid)
    finally:
        srv.stop()
    down_since = datetime.fromtimestamp(stopped / 1e6, UTC)
    catch_up = [
        r for r in runs if when(r["labels"]["scheduled_for"]) <= when(runs[0]["created_at"])
    ]
    assert 1 <= len(catch_up) <= 4  # the window holds at most 3 s of 1 s fires
    for run in catch_up:
        fire = when(run["labels"]["scheduled_for"])
        assert fire > down_since
        # None older than the window at the scheduler's decision (``now - fire <= window``,
        # now >= started); not the run's created_at, which a loaded machine commits later.
        assert fire >= started - timedelta(seconds=3, microseconds=1)
    assert status["missed_count"] >= 3  # 7 periods down, a 3 s window: the rest were missed
    assert Counter(r["labels"]["scheduled_for"] for r in runs).most_common(1)[0][1] == 1
