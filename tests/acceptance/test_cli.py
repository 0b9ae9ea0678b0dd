"""The ``mcpexec`` CLI as a user types it, against a real server."""

from __future__ import annotations

import json
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from mcpexec.client import Client

from .conftest import MCPEXEC, Server, free_port, sleeper, wait_until_gone


def test_run_streams_output_and_exits_with_the_code(server: Server) -> None:
    ok = server.cli("run", "--", "python3", "-c", "print(6*7)")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "42\n"
    failed = server.cli("run", "--", "sh", "-c", "echo oops >&2; exit 3")
    assert failed.returncode == 3
    assert failed.stderr == "oops\n"


def test_run_timeout_exits_124(server: Server) -> None:
    result = server.cli("run", "--timeout", "0.5", "--", "sleep", "30")
    assert result.returncode == 124


def test_detach_show_runs_logs(server: Server) -> None:
    submitted = server.cli(
        "run",
        "--detach",
        "--timeout",
        "5",
        "--retries",
        "2",
        "--retry-delay",
        "0",
        "--",
        "sh",
        "-c",
        "echo attempt $MCPEXEC_ATTEMPT; exit 2",
    )
    assert submitted.returncode == 0, submitted.stderr
    run_id = submitted.stdout.strip()
    with server.client() as client:
        assert client.wait(run_id, 30)["status"] == "failed"
    shown = server.cli("show", run_id)
    assert "failed" in shown.stdout
    assert "3 of at most 3" in shown.stdout
    assert shown.stdout.count("exit_code") == 4  # the run's failure line and three attempts
    # The sandbox (default mode) records what it applied: in show and in the REST attempts.
    assert "isolation:    bwrap(default)" in shown.stdout
    assert "limits:" in shown.stdout
    with server.client() as client:
        attempts = client.attempts(run_id)
    assert all(a["isolation"].startswith("bwrap(default)") for a in attempts)
    assert all(a["limits"]["timeout_s"] == 5 for a in attempts)
    unknown = server.cli("run", "--secret", "NOT_CONFIGURED", "--", "true")
    assert unknown.returncode != 0
    assert "NOT_CONFIGURED" in unknown.stderr + unknown.stdout
    listed = json.loads(server.cli("runs", "--status", "failed", "--json").stdout)
    assert run_id in [r["id"] for r in listed["runs"]]
    table = server.cli("runs")
    assert run_id in table.stdout
    assert server.cli("logs", run_id).stdout == "attempt 1\nattempt 2\nattempt 3\n"
    assert server.cli("logs", "-f", run_id).stdout == "attempt 1\nattempt 2\nattempt 3\n"


def test_cancel_and_rerun(server: Server) -> None:
    run_id = server.cli("submit", "--", "sleep", "60").stdout.strip()
    cancelled = server.cli("cancel", run_id)
    assert cancelled.returncode == 0
    with server.client() as client:
        assert client.wait(run_id, 30)["status"] == "cancelled"
    new_id = server.cli("rerun", run_id).stdout.strip()
    assert new_id
    assert new_id != run_id
    server.cli("cancel", new_id)


def test_ctrl_c_cancels_the_run(server: Server) -> None:
    marker = f"mcpexec-marker-{uuid.uuid4().hex}"
    env = {**server.env(), "MCPEXEC_TOKEN": server.token}
    proc = subprocess.Popen(
        [MCPEXEC, "run", "--json", "--", "sh", "-c", f"echo started; {sleeper(marker)}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "started\n"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 130, proc.stdout.read()
    proc.communicate()  # closes the pipes (an unclosed one is a ResourceWarning, an error)
    assert wait_until_gone(marker, 5.0) == []


def test_artifacts_download(server: Server, tmp_path: Path) -> None:
    run_id = server.cli(
        "submit", "--shell", 'printf data > "$MCPEXEC_OUTPUT_DIR/out.txt"'
    ).stdout.strip()
    with server.client() as client:
        client.wait(run_id, 30)
    listing = server.cli("artifacts", run_id)
    assert "out.txt" in listing.stdout
    target = tmp_path / "copy.txt"
    got = server.cli("artifacts", run_id, "--get", "out.txt", "-o", str(target))
    assert got.returncode == 0, got.stderr
    assert target.read_text() == "data"


@pytest.mark.parametrize(
    ("url", "reason"),
    [(None, "connection refused"), ("localhost:8002", "not an http(s) URL")],
)
def test_no_server_is_one_clear_line(tmp_path: Path, url: str | None, reason: str) -> None:
    result = subprocess.run(
        [MCPEXEC, "runs"],
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "MCPEXEC_HOME": str(tmp_path),
            "MCPEXEC_URL": url or f"http://127.0.0.1:{free_port()}",
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("mcpexec: no mcpexec server answers at")
    assert f"({reason}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_priority_then_fifo(tmp_path: Path) -> None:
    from .conftest import make_server

    srv = make_server(tmp_path, workers=1)
    srv.start()
    try:
        with srv.client() as client:
            # The only slot is busy until the blocker is cancelled (a sandboxed task cannot see
            # a gate file of the test's).
            blocker = client.submit({"shell": "sleep 60", "timeout_s": 60})
            client_wait_running(client, blocker["id"])
            order = ["low", "normal", "high", 5, "normal"]
            ids = [client.submit({"shell": "true", "priority": p})["id"] for p in order]
            client.cancel(blocker["id"])
            runs = [client.wait(i, 30) for i in ids]
        started = sorted(runs, key=lambda r: r["started_at"])
        assert [r["id"] for r in started] == [ids[2], ids[3], ids[1], ids[4], ids[0]]
    finally:
        srv.stop()


def client_wait_running(client: Client, run_id: str) -> None:
    """Bounded poll: the API has no 'wait until running' (the long-poll waits for the end)."""
    for _ in range(200):
        if client.get(run_id)["status"] == "running":
            return
        client.wait(run_id, 0.05)
    raise AssertionError("blocker never started")
