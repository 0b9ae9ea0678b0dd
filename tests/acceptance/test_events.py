"""``GET /api/v1/events`` against a real ``serve`` (issue 17): a client that disconnects and
resumes with ``Last-Event-ID`` gets every event once, in order; a tenant's token sees only its
tenant's events; pruned ids answer ``410 events_expired``; ``mcpexec events`` prints them and
``-f`` follows."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcpexec.client import ApiError, Client

from .conftest import MCPEXEC, Server, make_server

pytestmark = pytest.mark.timeout(120)

ECHO = {"command": ["true"], "timeout_s": 30}


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[Server]:
    server = make_server(tmp_path, workers=2, MCPEXEC_SANDBOX="none")
    server.start()
    yield server
    server.stop()


def _all_ids(client: Client) -> list[int]:
    ids: list[int] = []
    after = 0
    while True:
        page = client.events_page(after=after, limit=1000)
        ids += [e["id"] for e in page["events"]]
        if not page["events"]:
            return ids
        after = page["next_after"]


def test_a_client_that_disconnects_resumes_without_gaps(srv: Server) -> None:
    with srv.client() as client:
        runs = [client.submit(ECHO)["id"] for _ in range(6)]
        seen: list[dict[str, object]] = []
        # First connection: from the start of the log; the client hangs up after 4 events.
        for event in client.stream_events(0):
            seen.append(event)
            if len(seen) == 4:
                break
        # More happens while it is away.
        runs += [client.submit(ECHO)["id"] for _ in range(4)]
        for run_id in runs:
            assert client.wait(run_id, 60)["status"] == "completed"
        # Second connection: Last-Event-ID of the last event received, read until idle.
        last = int(str(seen[-1]["id"]))
        seen += list(client.stream_events(last, timeout=2.0))
        ids = [int(str(e["id"])) for e in seen]
        assert ids == sorted(set(ids)), "no event twice, none out of order"
        assert ids == _all_ids(client), "none skipped"
        finished = {e["subject"] for e in seen if e["type"] == "run.finished"}
        assert finished == set(runs)
        started = [e for e in seen if e["type"] == "run.started"]
        assert all(e["data"]["attempt"] == 1 for e in started)  # type: ignore[index]


def test_the_sse_framing_has_ids_types_and_the_open_message(srv: Server) -> None:
    import httpx

    with srv.client() as client:
        client.submit(ECHO)
    headers = {"Authorization": f"Bearer {srv.token}"}
    with httpx.Client(base_url=srv.url, headers=headers, timeout=30) as http:
        answer = http.get("/api/v1/events", params={"after": 0, "limit": 1})
        missing = http.get("/api/v1/events", headers={"Last-Event-ID": "x1"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    blocks = [b for b in answer.text.replace("\r\n", "\n").split("\n\n") if b.strip()]
    assert blocks[0].splitlines()[:2] == ["id: 0", "event: open"]
    lines = blocks[1].splitlines()
    assert lines[:2] == ["id: 1", "event: run.submitted"]
    assert json.loads(lines[2].removeprefix("data: "))["type"] == "run.submitted"
    assert missing.status_code == 422


def test_a_tenant_token_sees_only_its_tenant(srv: Server) -> None:
    with srv.client() as admin:
        admin.create_tenant("acme")
        secret = admin.create_token("acme-viewer", role="viewer", tenant="acme")["token"]
        submitter = admin.create_token("acme-sub", role="submitter", tenant="acme")["token"]
        mine = admin.submit(ECHO)["id"]
        with Client(srv.url, submitter) as acme:
            theirs = acme.submit(ECHO)["id"]
            acme.wait(theirs, 60)
        admin.wait(mine, 60)
        everything = {e["subject"] for e in admin.events_page(after=0, limit=1000)["events"]}
        assert {mine, theirs} <= everything
    with Client(srv.url, secret) as viewer:
        page = viewer.events_page(after=0, limit=1000)
        assert {e["subject"] for e in page["events"]} == {theirs}
        assert {e["tenant"] for e in page["events"]} == {"acme"}
        streamed = list(viewer.stream_events(0, timeout=1.0))
        assert {e["subject"] for e in streamed} == {theirs}


def test_pruned_ids_are_refused_with_a_stable_code(tmp_path: Path) -> None:
    server = make_server(
        tmp_path,
        workers=2,
        MCPEXEC_SANDBOX="none",
        MCPEXEC_EVENTS_MAX_COUNT="100",
        MCPEXEC_REAPER_S="0.2",
    )
    server.start()
    try:
        with server.client() as client:
            runs = [client.submit(ECHO)["id"] for _ in range(40)]
            for run_id in runs:
                client.wait(run_id, 60)
            # Bounded: the reaper prunes every 0.2 s; 40 runs wrote 120 events. A prune may
            # have run while they were written (then the log is over the cap by what came
            # after it): the one after the last write keeps exactly the newest 100.
            deadline = time.monotonic() + 30
            ids = _all_ids(client)
            while not (ids[0] > 2 and len(ids) <= 100) and time.monotonic() < deadline:
                time.sleep(0.05)  # a prune is not an event a client can await
                ids = _all_ids(client)
            assert ids[0] > 2
            assert len(ids) <= 100, len(ids)
            with pytest.raises(ApiError) as refused:
                client.events_page(after=1)
            assert (refused.value.status, refused.value.api_code) == (410, "events_expired")
            with pytest.raises(ApiError) as streamed:
                list(client.stream_events(1, timeout=1.0))
            assert streamed.value.api_code == "events_expired"
    finally:
        server.stop()


def test_the_cli_prints_and_follows_events(srv: Server) -> None:
    with srv.client() as client:
        run_id = client.submit(ECHO)["id"]
        client.wait(run_id, 60)
    printed = srv.cli("events", "--json")
    assert printed.returncode == 0, printed.stderr
    kinds = [json.loads(line)["type"] for line in printed.stdout.splitlines()]
    assert kinds[0] == "run.submitted"
    assert "run.finished" in kinds
    text = srv.cli("events", "--type", "run.finished")
    assert text.returncode == 0, text.stderr
    assert run_id in text.stdout
    assert "status=completed" in text.stdout
    bad = srv.cli("events", "--after", "-3")
    assert bad.returncode == 2
    # -f from a known id (so that nothing races the follower's connect): it prints the next
    # runs' submissions live and stops after two.
    with srv.client() as client:
        newest = _all_ids(client)[-1]
    args = ["-f", "--after", str(newest), "--type", "run.submitted", "--json", "--limit", "2"]
    follower = subprocess.Popen(
        [MCPEXEC, "events", *args],
        env={**srv.env(), "MCPEXEC_TOKEN": srv.token},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with srv.client() as client:
            later = [client.submit(ECHO)["id"] for _ in range(2)]
        out, err = follower.communicate(timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate(timeout=30)
    assert follower.returncode == 0, err
    assert [json.loads(line)["subject"] for line in out.splitlines()] == later
