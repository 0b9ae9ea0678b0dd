"""Quotas with real processes: ``serve`` plus two ``mcpexec worker`` processes on one store.

- Fairness: tenant A queues 300 runs, then tenant B 10, then the worker processes start; the
  worker slots (6) are the bottleneck, so FIFO would start B after all of A. B's runs start
  while A's backlog remains; B's wait from the first start is printed (the figure in
  docs/benchmarks.md).
- ``max_concurrent``: tenant C (limit 1) runs 20 runs at the same time; each run records its own
  start and end in a file outside the sandbox, and the test counts overlaps.
- ``max_queued``: a submit past the limit answers 429 with ``Retry-After`` and the code
  ``quota_exceeded``; nothing accepted is lost (every 202 run completes).
"""

from __future__ import annotations

import signal
import statistics
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client as McpClient
from mcp.client.streamable_http import streamable_http_client

from mcpexec.client import Client, QuotaExceededError

from .conftest import MCPEXEC, make_server

pytestmark = pytest.mark.slow


def _record(spans: Path, tenant: str) -> str:
    """A run that appends its start and end (ns since the epoch) to ``spans`` (O_APPEND)."""
    return (
        f'echo "start {tenant} $(date +%s%N) $$" >> {spans}; sleep 0.05; '
        f'echo "end {tenant} $(date +%s%N) $$" >> {spans}'
    )


def _max_overlap(lines: list[str], tenant: str) -> tuple[int, int]:
    """(most runs of ``tenant`` open at once, runs seen) from the start/end records."""
    events = []
    for line in lines:
        kind, who, stamp, _pid = line.split()
        if who == tenant:
            events.append((int(stamp), 1 if kind == "start" else -1))
    events.sort(key=lambda e: (e[0], e[1]))  # an end before a start at the same instant
    most = current = 0
    for _, delta in events:
        current += delta
        most = max(most, current)
    return most, sum(1 for _, d in events if d == 1)


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _wait_all(client: Client, ids: list[str], timeout_s: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    done = []
    for run_id in ids:
        run = client.wait(run_id, max(1.0, deadline - time.monotonic()))
        assert run["status"] == "completed", run
        done.append(run)
    return done


def test_fair_and_capped_across_processes(tmp_path: Path) -> None:
    srv = make_server(tmp_path, workers=0, MCPEXEC_SANDBOX="none")
    srv.start()
    workers: list[subprocess.Popen[bytes]] = []
    spans = tmp_path / "spans.txt"
    try:
        with srv.client() as admin:
            tokens = {}
            for tenant, cap in (("a", None), ("b", None), ("c", 1)):
                admin.create_tenant(tenant, max_concurrent=cap)
                tokens[tenant] = admin.create_token(f"{tenant}-bot", "submitter", tenant)["token"]
            ids: dict[str, list[str]] = {}
            for tenant, count in (("a", 300), ("c", 20), ("b", 10)):
                with Client(srv.url, tokens[tenant]) as c:
                    ids[tenant] = [
                        c.submit({"shell": _record(spans, tenant)})["id"] for _ in range(count)
                    ]
            # the backlog is queued: now three worker processes (2 slots each) on the store
            workers.extend(
                subprocess.Popen(
                    [MCPEXEC, "worker", "--workers", "2"],
                    env=srv.env(),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for _ in range(3)
            )
            runs = {}
            for tenant in ("b", "c", "a"):
                with Client(srv.url, tokens[tenant]) as c:
                    runs[tenant] = _wait_all(c, ids[tenant], 300)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            assert worker.wait(30) == 0
        srv.stop()

    lines = spans.read_text().splitlines()
    overlap_c, seen_c = _max_overlap(lines, "c")
    assert seen_c == 20
    assert overlap_c <= 1, f"tenant c (max_concurrent 1) ran {overlap_c} at once"
    overlap_a, _ = _max_overlap(lines, "a")

    b_last_start = max(_when(r["started_at"]) for r in runs["b"])
    a_after_b = sum(1 for r in runs["a"] if _when(r["started_at"]) > b_last_start)
    first = min(_when(r["started_at"]) for rs in runs.values() for r in rs)
    b_waits = [(_when(r["started_at"]) - first).total_seconds() for r in runs["b"]]
    a_span = max(_when(r["finished_at"]) for r in runs["a"]) - first
    print(
        f"fairness: B's 10 runs queued behind A's 300 started first {min(b_waits):.2f} s, "
        f"median {statistics.median(b_waits):.2f} s, last {max(b_waits):.2f} s after the "
        "first start; "
        f"{a_after_b} of A's runs started after B's last; A's backlog took "
        f"{a_span.total_seconds():.1f} s on 6 slots; c at most {overlap_c} at once (limit 1), "
        f"a at most {overlap_a}"
    )
    # FIFO would start B only after every A run: fair claims start B while A's backlog remains.
    assert a_after_b >= 100


async def _mcp_submit(url: str, token: str) -> str:
    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30, read=60)
    )
    transport = streamable_http_client(f"{url}/mcp", http_client=http)
    async with McpClient(transport, mode="auto", read_timeout_seconds=60) as client:
        result = await client.call_tool("submit_run", {"command": ["true"]})
    assert result.is_error
    text = " ".join(getattr(c, "text", "") for c in result.content)
    return "quota_exceeded" if "(quota_exceeded)" in text else text


def test_queue_limit_answers_429_and_loses_nothing(tmp_path: Path) -> None:
    srv = make_server(tmp_path, workers=0)  # nothing runs: the queue only fills
    srv.start()
    try:
        with srv.client() as admin:
            admin.create_tenant("small", max_queued=5)
            token = admin.create_token("bot", "submitter", "small")["token"]
        accepted = []
        with Client(srv.url, token) as c:
            for _ in range(5):
                accepted.append(c.submit({"command": ["true"]})["id"])
            with pytest.raises(QuotaExceededError) as refused:
                c.submit({"command": ["true"]})
            assert refused.value.status == 429
            assert refused.value.api_code == "quota_exceeded"
            assert refused.value.limit == "max_queued"
            assert refused.value.retry_after is not None
            raw = httpx.post(
                f"{srv.url}/api/v1/runs",
                json={"command": ["true"]},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert raw.status_code == 429
            assert int(raw.headers["retry-after"]) > 0
            assert "max_queued" in raw.json()["error"]["message"]
            # the CLI says it in one line
            cli = srv.cli("submit", "--", "true", env={"MCPEXEC_TOKEN": token})
            assert cli.returncode == 1
            assert cli.stderr.strip().count("\n") == 0
            assert "quota_exceeded" in cli.stderr
            assert "Traceback" not in cli.stderr
            assert c.quota()["in_use"]["queued"] == 5
            # over MCP: a tool error carrying the same code
            assert anyio.run(_mcp_submit, srv.url, token) == "quota_exceeded"
    finally:
        srv.stop()
    # nothing accepted is lost: a serve with workers on the same home runs all five
    srv.workers = 2
    srv.start()
    try:
        with Client(srv.url, token) as c:
            assert {c.wait(i, 60)["status"] for i in accepted} == {"completed"}
    finally:
        srv.stop()
