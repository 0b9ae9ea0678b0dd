"""A submitter process for the max_queued test (run as a script, not collected).

Usage: quota_submitter.py STORE_URL NAME COUNT
Submits COUNT runs of tenant ``q``, 8 at a time, once told to go (``contract.barrier``); prints
{"admitted": [run ids], "refused": n} as JSON."""

from __future__ import annotations

import asyncio
import json
import sys

from contract.barrier import wait_for_go
from mcpexec.errors import QuotaExceeded
from mcpexec.models import DEFAULT_RETRY, ExecSpec, utcnow
from mcpexec.store.base import NewRun
from mcpexec.store.url import open_store


async def main(url: str, name: str, count: int) -> None:
    store = open_store(url)
    await store.open()
    await asyncio.to_thread(wait_for_go)
    admitted: list[str] = []
    refused = 0
    todo = iter(range(count))

    async def submitter() -> None:
        nonlocal refused
        for i in todo:
            new = NewRun(
                id=f"{name}-{i:03}",
                tenant="q",
                spec=ExecSpec(command=["true"]),
                retry=DEFAULT_RETRY,
                priority=0,
                labels={},
                created_at=utcnow(),
            )
            try:
                run, created = await store.enqueue(new)
            except QuotaExceeded:
                refused += 1
            else:
                assert created
                admitted.append(run.id)

    try:
        await asyncio.gather(*(submitter() for _ in range(8)))
    finally:
        await store.close()
    print(json.dumps({"admitted": admitted, "refused": refused}))


if __name__ == "__main__":
    url, name, count = sys.argv[1:]
    asyncio.run(main(url, name, int(count)))
