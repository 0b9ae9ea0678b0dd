"""Dashboard pages and the ``/metrics`` scrape of a real ``mcpexec serve``, against the REST
API's default run list (``GET /api/v1/runs``) measured in the same run on the same store.

The store is filled first (SQLite, in a temporary home): N finished runs, one a second up to now
(``bench_history.fill_sqlite``: every tenth labelled ``bench=tenth``, statuses 3:1:1), then
``serve`` starts on it with no workers. Each endpoint is then fetched sequentially over loopback
HTTP
(keep-alive, one client): milliseconds from request to full body, p50 and p95, and each p95 as a
ratio to the baseline's p95.

Usage::

    .venv/bin/python bench/bench_dashboard.py                 # 20,000 runs, 200 samples each
    .venv/bin/python bench/bench_dashboard.py --runs 1000000 --samples 100
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from bench_history import fill_sqlite

from mcpexec.store.sqlite import SqliteStore

MCPEXEC = str(Path(sys.executable).parent / "mcpexec")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def fill(path: Path, runs: int) -> str:
    """``runs`` finished runs in a migrated store at ``path`` (``bench_history``'s history: one
    a second up to now, inserted by SQL with the store's triggers); returns the newest id."""
    store = SqliteStore(path)
    await store.open()
    await store.close()
    t0_us = int(time.time() * 1_000_000) - runs * 1_000_000
    await asyncio.to_thread(fill_sqlite, path, runs, t0_us)
    return f"{runs - 1:032x}"


def start(home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "MCPEXEC_HOME": str(home),
        "MCPEXEC_SANDBOX": "none",
        "MCPEXEC_LOG_LEVEL": "warning",
    }
    proc = subprocess.Popen(
        [MCPEXEC, "serve", "--port", str(port), "--workers", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("serve did not start")


def login(client: httpx.Client, token: str) -> None:
    form = client.get("/ui/login").text
    nonce = re.search(r'name="nonce" value="([^"]+)"', form)
    assert nonce is not None
    answer = client.post("/ui/login", data={"token": token, "nonce": nonce.group(1)})
    assert answer.status_code == 303, answer.text
    client.cookies.set("mcpexec_session", answer.cookies["mcpexec_session"], path="/ui")


def sample(client: httpx.Client, path: str, n: int, headers: dict[str, str]) -> list[float]:
    for _ in range(min(20, n)):
        assert client.get(path, headers=headers).status_code == 200, path
    times = []
    for _ in range(n):
        started = time.perf_counter()
        answer = client.get(path, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, path
    return times


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[94]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        started = time.perf_counter()
        run_id = asyncio.run(fill(home / "mcpexec.db", args.runs))
        print(f"store: {args.runs} finished runs ({time.perf_counter() - started:.0f} s to fill)")
        port = free_port()
        proc = start(home, port)
        try:
            token = (home / "token").read_text().strip()
            bearer = {"Authorization": f"Bearer {token}"}
            now = datetime.now(UTC)
            week_ago = (now - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%S")
            year_ago = (now - timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%S")
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                login(client, token)
                cases = [
                    ("GET /api/v1/runs (baseline)", "/api/v1/runs", bearer),
                    ("/ui/ (overview)", "/ui/", {}),
                    ("/ui/runs", "/ui/runs", {}),
                    ("/ui/runs?label=bench=tenth", "/ui/runs?label=bench%3Dtenth", {}),
                    ("/ui/runs?status=failed", "/ui/runs?status=failed", {}),
                    ("/ui/runs?after=<a week ago>", f"/ui/runs?after={week_ago}", {}),
                    ("/ui/runs?before=<a year ago>", f"/ui/runs?before={year_ago}", {}),
                    ("/ui/runs/rows (live update)", "/ui/runs/rows", {}),
                    ("/ui/runs/{id}", f"/ui/runs/{run_id}", {}),
                    ("/ui/runs/{id}/log (follow)", f"/ui/runs/{run_id}/log", {}),
                    ("/ui/alerts", "/ui/alerts", {}),
                    ("GET /api/v1/stats/history", "/api/v1/stats/history", bearer),
                    ("/metrics", "/metrics", bearer),
                    ("GET /api/v1/runs (baseline again)", "/api/v1/runs", bearer),
                ]
                baseline = 0.0
                for name, path, headers in cases:
                    times = sample(client, path, args.samples, headers)
                    tail = p95(times)
                    baseline = baseline or tail
                    print(
                        f"{name:34} p50 {statistics.median(times):7.2f} ms  p95 {tail:7.2f} ms"
                        f"  p95 ratio {tail / baseline:5.2f}"
                    )
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
