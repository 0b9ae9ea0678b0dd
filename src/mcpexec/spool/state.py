"""``.state.<pid>.json``: what one spool process is doing now, for ``mcpexec spool status``.

A view, not a record: rewritten (temporary name, rename, no fsync) by a background task at
most every ``INTERVAL_S`` after a change, off the event loop (a rename costs milliseconds on a
busy disk: written per change it took a sixth of the loop's time in a flood of small jobs);
removed at a clean stop. A file whose pid is gone is ignored by status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from typing import Any

from mcpexec.models import utcnow
from mcpexec.spool.files import SpoolDirs

INTERVAL_S = 0.1


class StateFile:
    def __init__(self, dirs: SpoolDirs) -> None:
        self.path = dirs.root / f".state.{os.getpid()}.json"
        self._started = utcnow().isoformat()
        self._jobs: dict[str, dict[str, Any]] = {}
        self._changed = asyncio.Event()

    def set(self, name: str, run_id: str | None, status: str) -> None:
        entry = self._jobs.setdefault(name, {"since": utcnow().isoformat()})
        entry.update(run_id=run_id, status=status)
        self._changed.set()

    def drop(self, name: str) -> None:
        self._jobs.pop(name, None)
        self._changed.set()

    async def run(self) -> None:
        """Write the state whenever it changed, at most every ``INTERVAL_S``."""
        while True:
            await self.write()
            await self._changed.wait()
            await asyncio.sleep(INTERVAL_S)  # coalesce a burst of changes into one write

    async def write(self) -> None:
        self._changed.clear()
        data = json.dumps(
            {"pid": os.getpid(), "started_at": self._started, "jobs": dict(self._jobs)}
        )
        await asyncio.to_thread(self._write, data)

    def _write(self, data: str) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with contextlib.suppress(OSError):
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(data)
            os.replace(tmp, self.path)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
