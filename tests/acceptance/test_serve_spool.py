"""``mcpexec serve --spool DIR``: the spool runs inside serve, its jobs are ordinary runs."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx

from .conftest import make_server
from .test_dashboard_http import RUN_LINK, login


def _wait_for(path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout_s}s")
        time.sleep(0.05)  # a file another process writes: polled, bounded


def _page_until(ui: httpx.Client, path: str, pattern: re.Pattern[str]) -> str:
    deadline = time.monotonic() + 30
    while True:
        page = ui.get(path)
        assert page.status_code == 200, page.text
        if pattern.search(page.text) or time.monotonic() > deadline:
            return page.text
        time.sleep(0.05)  # the spool daemon writes its state file: polled, bounded


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
        scrape = httpx.get(
            f"{server.url}/metrics", headers={"Authorization": f"Bearer {server.token}"}
        ).text
        assert 'mcpexec_spool_jobs_total{status="completed"} 1.0' in scrape
        # the dashboard's spool page reads the same directory, through the App
        slow = spool / "pending" / ".slow.json.tmp"
        slow.write_text(json.dumps({"command": "sleep", "args": ["60"]}))
        slow.rename(spool / "pending" / "slow.json")
        with login(server, server.token) as ui:
            page = _page_until(ui, "/ui/spool", RUN_LINK)
        assert str(spool) in page
        assert '<span class="n">1</span> completed' in page
        assert "slow.json" in page
        found = RUN_LINK.search(page)
        assert found is not None
        server.client().cancel(found.group(1))  # the job's run
    finally:
        assert server.stop() == 0
