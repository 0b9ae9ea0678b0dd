"""Dashboard pages and the ``/metrics`` scrape of a real ``mcpexec serve``, against the REST
API's default run list (``GET /api/v1/runs``) measured in the same run on the same store.

The store is filled first (SQLite, in a temporary home): N finished runs (every tenth with the
label ``bench=tenth``), enqueued, claimed and finished through the store contract, then ``serve``
starts on it with no workers. Each endpoint is then fetched sequentially over loopback HTTP
(keep-alive, one client): milliseconds from request to full body, p50 and p95, and each p95 as a
ratio to the baseline's p95.

Usage::

    .venv/bin/python bench/bench_dashboard.py                 # 20,000 runs, 200 samples each
    .venv/bin/python bench/bench_dashboard.py --runs 100000 --samples 300
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

from mcpexec.models import DEFAULT_RETRY, ExecSpec
from mcpexec.store.base import AttemptOutcome, NewRun
from mcpexec.store.sqlite import SqliteStore

MCPEXEC = str(Path(sys.executable).parent / "mcpexec")
DONE = AttemptOutcome(succeeded=True, exit_code=0)
LEASE = timedelta(seconds=60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def fill(path: Path, runs: int) -> str:
    """``runs`` finished runs in the store at ``path``; returns the id of the last one."""
    store = SqliteStore(path)
    await store.open()
    last = ""
    batch = 200
    for start in range(0, runs, batch):
        now = datetime.now(UTC)
        for i in range(start, min(start + batch, runs)):
            labels = {"bench": "tenth"} if i % 10 == 0 else {}
            new = NewRun(
                id=f"{i:032x}",
                tenant="default",
                spec=ExecSpec(command=["echo", str(i)]),
                retry=DEFAULT_RETRY,
                priority=0,
                labels=labels,
                created_at=now,
            )
            await store.enqueue(new)
            last = new.id
        for claim in await store.claim("bench", batch, now, now + LEASE):
            await store.finish_attempt(claim.run.id, claim.attempt, "bench", DONE, now, None)
    await store.close()
    return last


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
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                login(client, token)
                cases = [
                    ("GET /api/v1/runs (baseline)", "/api/v1/runs", bearer),
                    ("/ui/ (overview)", "/ui/", {}),
                    ("/ui/runs", "/ui/runs", {}),
                    ("/ui/runs?label=bench=tenth", "/ui/runs?label=bench%3Dtenth", {}),
                    ("/ui/runs/rows (live update)", "/ui/runs/rows", {}),
                    ("/ui/runs/{id}", f"/ui/runs/{run_id}", {}),
                    ("/ui/runs/{id}/log (follow)", f"/ui/runs/{run_id}/log", {}),
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
