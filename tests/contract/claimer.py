"""A worker process for the concurrency tests (run as a script, not collected).

Usage: claimer.py STORE_URL WORKER_ID BATCH
Opens its own store, says it is ready, waits for the go signal (so that both processes
really overlap), then claims and completes runs until none is left; prints the claimed ids as
JSON on stdout.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import timedelta

from contract.barrier import wait_for_go
from mcpexec.models import utcnow
from mcpexec.store.base import AttemptOutcome
from mcpexec.store.url import open_store


async def main(url: str, worker: str, batch: int) -> None:
    store = open_store(url)
    await store.open()
    await asyncio.to_thread(wait_for_go)
    claimed: list[str] = []
    idle = 0
    while idle < 3:  # a few empty claims in a row: the queue is drained
        now = utcnow()
        claims = await store.claim(worker, batch, now, now + timedelta(seconds=30))
        idle = 0 if claims else idle + 1
        for claim in claims:
            claimed.append(claim.run.id)
            done = await store.finish_attempt(
                claim.run.id, claim.attempt, worker, AttemptOutcome(succeeded=True), utcnow(), None
            )
            assert done is not None
    await store.close()
    print(json.dumps(claimed))


if __name__ == "__main__":
    url, worker, batch = sys.argv[1:4]
    asyncio.run(main(url, worker, int(batch)))
