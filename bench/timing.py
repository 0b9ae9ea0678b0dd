"""What the round-trip benchmarks share: sequential samples, a rate at a concurrency, percentiles.

Imported by the scripts beside it (run as ``.venv/bin/python bench/NAME.py``, which puts this
directory on the path).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable

import anyio


async def timed(call: Callable[[], Awaitable[object]], n: int, warmup: int = 50) -> list[float]:
    """``n`` sequential calls after ``min(warmup, n)`` unmeasured ones: milliseconds each."""
    for _ in range(min(warmup, n)):
        await call()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def rate(call: Callable[[], Awaitable[object]], concurrency: int, total: int) -> float:
    """Calls per second of ``total`` calls made by ``concurrency`` concurrent callers."""
    left = total

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return total / (time.perf_counter() - start)


def pct(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[int(q) - 1]
