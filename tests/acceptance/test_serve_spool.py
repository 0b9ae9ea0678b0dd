"""``mcpexec serve --spool DIR``: the spool runs inside serve, its jobs are ordinary runs."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .conftest import make_server


def _wait_for(path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout_s}s")
        time.sleep(0.05)  # a file another process writes: polled, bounded


def test_serve_with_a_spool_runs_its_jobs_as_runs(tmp_path: Path) -> None:
    spool = tmp_path / "queue"
    server = make_server(tmp_path)
    server.args = ["--spool", str(spool)]
    server.start()
    try:
        _wait_for(spool / "pending", 30)
        job = spool / "pending" / ".hello.json.tmp"
        job.write_text(json.dumps({"command": "echo", "args": ["Hello, World!"]}))
        job.rename(spool / "pending" / "hello.json")  # write-then-rename, as documented
        done = spool / "completed" / "hello.json"
        _wait_for(done, 60)
        result = json.loads(done.read_text())["result"]
        assert result["status"] == "completed"
        assert result["stdout"] == "Hello, World!\n"
        run = server.client().get(result["run_id"])
        assert run["status"] == "completed"
    finally:
        assert server.stop() == 0
