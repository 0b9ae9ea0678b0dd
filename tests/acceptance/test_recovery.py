"""Crash recovery and graceful shutdown of a real ``serve`` process."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import pytest

from mcpexec.client import Client

from .conftest import make_server, processes_with_marker, sleeper, wait_until_gone

pytestmark = pytest.mark.slow


def wait_status(client: Client, run_ids: list[str], status: str, timeout_s: float) -> None:
    """Bounded poll until every run has ``status`` (no API waits for 'running')."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(client.get(i)["status"] == status for i in run_ids):
            return
        time.sleep(0.05)
    raise AssertionError(f"runs not all {status}: {[client.get(i)['status'] for i in run_ids]}")


def test_kill_9_then_restart_finishes_every_run(tmp_path: Path) -> None:
    srv = make_server(tmp_path, workers=4)
    srv.start()
    marker = f"mcpexec-marker-{uuid.uuid4().hex}"
    source = "import time; time.sleep(2); print('done')"
    with srv.client() as client:
        running = [
            client.submit({"command": ["python3", "-c", source, marker]})["id"] for _ in range(4)
        ]
        queued = [client.submit({"shell": "echo queued"})["id"] for _ in range(3)]
        wait_status(client, running, "running", 20)
        # "running" is stored at the claim, before the spawn: wait (bounded) for the execs.
        deadline = time.monotonic() + 20
        while len(processes_with_marker(marker, wrappers=False)) < 4:
            assert time.monotonic() < deadline, processes_with_marker(marker, wrappers=False)
            time.sleep(0.02)
        assert len(processes_with_marker(marker, wrappers=False)) == 4
    srv.stop(signal.SIGKILL)
    # No task process outlives the killed server by more than 2 s.
    assert wait_until_gone(marker, 2.0) == []

    srv.start()
    try:
        with srv.client() as client:
            finals = [client.wait(i, 60) for i in running + queued]
            assert [r["status"] for r in finals] == ["completed"] * 7
            for run_id in running:
                attempts = client.attempts(run_id)
                assert [a["number"] for a in attempts] == [1, 2]
                assert attempts[0]["failure"]["kind"] == "worker_lost"
                assert client.logs(run_id)["data"] == "done\n"
            assert client.list_runs(status=["running"])["runs"] == []
    finally:
        srv.stop()
    assert processes_with_marker(marker) == []


def test_sigterm_lets_running_attempts_finish(tmp_path: Path) -> None:
    srv = make_server(tmp_path, workers=2, MCPEXEC_SHUTDOWN_GRACE_S="20")
    srv.start()
    with srv.client() as client:
        run_id = client.submit({"shell": "sleep 1; echo finished"})["id"]
        wait_status(client, [run_id], "running", 20)
    assert srv.stop(signal.SIGTERM) == 0
    srv.start()
    try:
        with srv.client() as client:
            done = client.get(run_id)
            assert done["status"] == "completed"
            assert done["attempts"] == 1
    finally:
        srv.stop()


def test_sigterm_past_the_grace_requeues_and_kills(tmp_path: Path) -> None:
    srv = make_server(tmp_path, workers=2, MCPEXEC_SHUTDOWN_GRACE_S="0.5")
    srv.start()
    marker = f"mcpexec-marker-{uuid.uuid4().hex}"
    shell = f'if [ "$MCPEXEC_ATTEMPT" = 1 ]; then {sleeper(marker)}; fi; echo second'
    with srv.client() as client:
        run_id = client.submit({"shell": shell})["id"]
        wait_status(client, [run_id], "running", 20)
    assert srv.stop(signal.SIGTERM) == 0
    assert processes_with_marker(marker) == []
    srv.start()
    try:
        with srv.client() as client:
            done = client.wait(run_id, 30)
            assert done["status"] == "completed"
            attempts = client.attempts(run_id)
            assert attempts[0]["failure"]["kind"] == "worker_lost"
            assert "shutdown" in attempts[0]["failure"]["message"]
    finally:
        srv.stop()


def test_separate_worker_process(tmp_path: Path) -> None:
    import subprocess

    from .conftest import MCPEXEC

    srv = make_server(tmp_path, workers=0)
    srv.start()
    worker = subprocess.Popen(
        [MCPEXEC, "worker", "--workers", "2"],
        env=srv.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with srv.client() as client:
            done = client.wait(client.submit({"shell": "echo from-worker"})["id"], 30)
            assert done["status"] == "completed"
            assert client.logs(done["id"])["data"] == "from-worker\n"
            workers = client.workers()
            assert len(workers) == 1
            assert workers[0]["pid"] == worker.pid
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
        srv.stop()
