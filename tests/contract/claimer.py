"""A worker process for the concurrency tests (run as a script, not collected).

Usage: claimer.py STORE_URL WORKER_ID READY_FILE GO_FILE BATCH
Opens its own store, says it is ready, waits for the go signal (so that both processes
really overlap), then claims and completes runs until none is left; prints the claimed ids as
JSON on stdout.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import timedelta
from pathlib import Path

from mcpexec.models import utcnow
from mcpexec.store.base import AttemptOutcome
from mcpexec.store.url import open_store


def _ready_set_go(ready: Path, go: Path) -> None:
    ready.touch()
    deadline = time.monotonic() + 30
    while not go.exists():
        if time.monotonic() > deadline:
            raise SystemExit("no go signal")
        time.sleep(0.005)


async def main(url: str, worker: str, ready: Path, go: Path, batch: int) -> None:
    store = open_store(url)
    await store.open()
    await asyncio.to_thread(_ready_set_go, ready, go)
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
    url, worker, ready, go, batch = sys.argv[1:6]
    asyncio.run(main(url, worker, Path(ready), Path(go), int(batch)))
