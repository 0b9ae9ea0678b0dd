"""Event stream fan-out of a real ``mcpexec serve``: 100 subscribers of ``GET /api/v1/events``
against a baseline of one subscriber measured in the same run on the same server.

Each round opens the subscribers (SSE over loopback, one connection each, all in one asyncio
process), waits until every one has its ``open`` message, then submits K runs delayed by an
hour (each writes one ``run.submitted`` event and executes nothing) and measures the time from
the first submit until every subscriber has received all K events: milliseconds, the delivered
events per second (K x subscribers / time), and the 100-subscriber time as a ratio to the
one-subscriber time. The server has no workers; SQLite store in a temporary home.

Usage::

    .venv/bin/python bench/bench_events.py                 # 100 subscribers, 200 events, 3 rounds
    .venv/bin/python bench/bench_events.py --subscribers 200 --events 500
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from bench_dashboard import free_port, start
from httpx_sse import aconnect_sse


async def subscriber(
    http: httpx.AsyncClient, opened: asyncio.Event, want: int, counter: list[int]
) -> float:
    """Read ``want`` run.submitted events; the monotonic time the last one arrived."""
    got = 0
    params = {"type": "run.submitted", "limit": want, "timeout": 120}
    async with aconnect_sse(http, "GET", "/api/v1/events", params=params) as source:
        async for event in source.aiter_sse():
            if event.event == "open":
                counter[0] += 1
                if counter[0] == counter[1]:
                    opened.set()
                continue
            got += 1
            if got == want:
                return time.monotonic()
    raise RuntimeError(f"stream ended after {got} of {want} events")


async def one_round(url: str, token: str, subscribers: int, events: int) -> float:
    """Milliseconds from the first submit until every subscriber has every event."""
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=subscribers + 10)
    async with (
        httpx.AsyncClient(base_url=url, headers=headers, timeout=120, limits=limits) as http,
        httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as submitter,
    ):
        opened = asyncio.Event()
        counter = [0, subscribers]
        tasks = [
            asyncio.create_task(subscriber(http, opened, events, counter))
            for _ in range(subscribers)
        ]
        await asyncio.wait_for(opened.wait(), 60)
        run_at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        began = time.monotonic()
        for _ in range(events):
            answer = await submitter.post(
                "/api/v1/runs", json={"command": ["true"], "run_at": run_at}
            )
            answer.raise_for_status()
        finished = await asyncio.gather(*tasks)
        return (max(finished) - began) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        port = free_port()
        proc = start(home, port)
        try:
            url = f"http://127.0.0.1:{port}"
            token = (home / "token").read_text().strip()
            results: dict[int, list[float]] = {1: [], args.subscribers: []}
            for _ in range(args.rounds):
                for n, samples in results.items():
                    samples.append(asyncio.run(one_round(url, token, n, args.events)))
        finally:
            proc.terminate()
            proc.wait(30)
    print(
        f"event stream fan-out, {args.events} events per round, median of {args.rounds} "
        "rounds (SQLite, serve with no workers, loopback)"
    )
    base = statistics.median(results[1])
    for n, samples in results.items():
        ms = statistics.median(samples)
        rate = args.events * n / (ms / 1000)
        ratio = "" if n == 1 else f"  x{ms / base:.2f} vs 1 subscriber"
        print(f"  {n:4d} subscriber(s): {ms:8.1f} ms  {rate:10.0f} events/s delivered{ratio}")


if __name__ == "__main__":
    main()
