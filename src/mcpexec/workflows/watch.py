"""Checkpoint files noticed the moment they are written: inotify, through ``watchfiles``.

The engine tells the watcher which checkpoint files its running steps wait for; the watcher
watches, without recursion, the nearest directory of each that exists (``checkpoints/`` once the
agent made it, the workspace until then) and calls ``on_change`` when anything on the way to a
checkpoint file appears or changes. The engine then ticks at once. A new directory on the way
changes what exists, so the engine's next tick hands over a new set and the watch moves down.

Nothing depends on it for correctness: the engine still ticks on its own, more slowly while the
watch works (``WorkflowEngine`` picks the interval from ``working``). Where inotify cannot be had
(no watches left, an exotic file system) the watcher logs it once and says it is not working, and
the engine polls as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import watchfiles

log = logging.getLogger(__name__)

#: How long watchfiles waits for more changes before yielding a batch (ms): a checkpoint is one
#: small write, so a short step keeps detection well under the issue's 100 ms.
STEP_MS = 10


def _nearest_existing(path: Path) -> Path | None:
    for parent in path.parents:
        if parent.is_dir():
            return parent
    return None


class CheckpointWatcher:
    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self._dirs: frozenset[Path] = frozenset()
        #: The checkpoint files and every directory on their way: the only paths that matter.
        self._interesting: frozenset[str] = frozenset()
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        #: Set once the current watch is registered (a write from then on is seen).
        self.ready = asyncio.Event()
        self.working = True

    def watch(self, files: Iterable[Path]) -> None:
        """Watch for ``files`` (absolute paths) from now on; no change, no restart."""
        wanted = {f for f in files if f.is_absolute()}
        dirs = frozenset(d for d in map(_nearest_existing, wanted) if d is not None)
        if dirs == self._dirs and (self._task is None) == (not dirs):
            return
        self._stop_task()
        self._dirs = dirs
        self._interesting = frozenset(str(p) for f in wanted for p in (f, *f.parents))
        self.ready = asyncio.Event()
        if dirs and self.working:
            self._stop = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(
                self._run(dirs, self._stop, self.ready), name="mcpexec-checkpoint-watch"
            )

    def _relevant(self, _change: watchfiles.Change, path: str) -> bool:
        return path in self._interesting

    async def _run(self, dirs: frozenset[Path], stop: asyncio.Event, ready: asyncio.Event) -> None:
        changes = watchfiles.awatch(
            *dirs,
            watch_filter=self._relevant,
            recursive=False,
            step=STEP_MS,
            stop_event=stop,
            ignore_permission_denied=True,
        )
        try:
            # The generator's first step registers the inotify watches (watchfiles builds its
            # RustNotify before its first await); the task runs that step before this one goes
            # on (asyncio runs ready callbacks in order). A file written before then is seen by
            # the tick ``on_change`` asks for now.
            first = asyncio.ensure_future(anext(changes))
            await asyncio.sleep(0)
            ready.set()
            self._on_change()
            await first
            self._on_change()
            async for _ in changes:
                self._on_change()
        except asyncio.CancelledError:
            raise
        except StopAsyncIteration:  # stopped before the first change
            pass
        except Exception as exc:  # inotify refused (limits, file system): poll instead
            if not stop.is_set():
                self.working = False
                log.warning("checkpoint watch unavailable, polling instead: %s", exc)
                self._on_change()
        finally:
            await changes.aclose()

    def _stop_task(self) -> None:
        if self._stop is not None:
            self._stop.set()
        self._task, self._stop = None, None

    async def close(self) -> None:
        task = self._task
        self._stop_task()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
