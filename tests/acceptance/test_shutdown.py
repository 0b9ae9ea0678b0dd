"""SIGTERM on a real ``serve`` (issue 8, item 8): no attempt starts after the signal, an open
long-poll answers 200 with the run as it is, an SSE follower gets a final ``shutdown`` event."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from .conftest import MCPEXEC, make_server
from .test_recovery import wait_status

pytestmark = pytest.mark.slow

BOUND_S = 30.0


def test_sigterm_stops_claiming_and_ends_waiters_with_the_current_state(tmp_path: Path) -> None:
    go = tmp_path / "go"
    # One slot, held by a run that finishes only when the test says so (after the signal):
    # without sandbox so that it sees the test's directory.
    srv = make_server(tmp_path, workers=1, MCPEXEC_SANDBOX="none", MCPEXEC_SHUTDOWN_GRACE_S="20")
    srv.start()
    headers = {"Authorization": f"Bearer {srv.token}"}
    with srv.client() as client:
        holder = client.submit({"shell": f"while [ ! -e {go} ]; do sleep 0.02; done; echo held"})
        wait_status(client, [holder["id"]], "running", BOUND_S)
        queued = [client.submit({"shell": f"echo queued-{i}"})["id"] for i in range(3)]

    # The long-poll is written on a raw socket before the follow connects: uvicorn reads it
    # first, so once the follow's headers are back the long-poll is a request in progress
    # (no sleep needed to know it "arrived").
    poll = socket.create_connection(("127.0.0.1", srv.port), timeout=BOUND_S)
    poll.sendall(
        f"GET /api/v1/runs/{queued[0]}?wait=120 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {srv.token}\r\nConnection: close\r\n\r\n".encode()
    )

    events: list[tuple[str, dict[str, Any]]] = []
    following = threading.Event()

    def follow() -> None:
        try:
            with (
                httpx.Client(base_url=srv.url, headers=headers, timeout=BOUND_S) as http,
                connect_sse(http, "GET", f"/api/v1/runs/{queued[1]}/logs?follow=true") as source,
            ):
                following.set()
                for event in source.iter_sse():
                    events.append((event.event, json.loads(event.data)))
        except httpx.HTTPError as exc:
            events.append(("error", {"error": repr(exc)}))
        finally:
            following.set()

    follower = threading.Thread(target=follow)
    follower.start()
    assert following.wait(BOUND_S)  # the stream's headers arrived: the follow is open

    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGTERM)
    go.touch()  # the holder finishes now, after the signal, freeing its slot during the drain
    status, body = read_response(poll)
    follower.join(BOUND_S)
    assert srv.proc.wait(BOUND_S) == 0, srv.log()

    # The long-poll got a 200 with the run as it is (still pending), not a 500 or a cut.
    assert status == 200, (status, body, srv.log())
    run = json.loads(body)
    assert (run["id"], run["status"]) == (queued[0], "pending")
    # The follower got a last event saying why the stream ends.
    assert [name for name, _ in events] == ["shutdown"], events
    assert events[0][1]["status"] == "pending"

    # The holder finished within the grace; the queued runs never got an attempt: a serve
    # without workers shows them untouched, and the next serve with workers runs them.
    idle = make_server(tmp_path, workers=0)
    idle.start()
    try:
        with idle.client() as client:
            assert client.get(holder["id"])["status"] == "completed"
            for run_id in queued:
                run = client.get(run_id)
                assert (run["status"], run["attempts"]) == ("pending", 0), run
    finally:
        idle.stop()
    again = make_server(tmp_path, workers=1)
    again.start()
    try:
        with again.client() as client:
            assert [client.wait(i, BOUND_S)["status"] for i in queued] == ["completed"] * 3
    finally:
        again.stop()


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of the one response on ``sock`` (``Connection: close``: read to EOF)."""
    data = b""
    with sock:
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head:
        return 0, b"(connection closed without a response)"
    return int(head.split(b" ", 2)[1]), body


def test_cli_follower_says_the_server_is_shutting_down(tmp_path: Path) -> None:
    """``mcpexec logs -f`` ends with one line (no traceback, exit 1) at the ``shutdown`` event,
    naming the run to follow again, instead of ending silently as if the run had ended."""
    go = tmp_path / "go"
    srv = make_server(tmp_path, workers=1, MCPEXEC_SANDBOX="none", MCPEXEC_SHUTDOWN_GRACE_S="20")
    srv.start()
    with srv.client() as client:
        run = client.submit({"shell": f"echo started; while [ ! -e {go} ]; do sleep 0.02; done"})
    follower = subprocess.Popen(
        [MCPEXEC, "logs", "-f", run["id"]],
        env={**srv.env(), "MCPEXEC_TOKEN": srv.token},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline() == "started\n"  # the follow is open and live
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGTERM)
        out, err = follower.communicate(timeout=BOUND_S)
    finally:
        go.touch()
        if follower.poll() is None:
            follower.kill()
    assert srv.proc.wait(BOUND_S) == 0, srv.log()
    assert follower.returncode == 1, (out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "shutting down" in lines[0]
    assert f"mcpexec logs -f {run['id']}" in lines[0]
