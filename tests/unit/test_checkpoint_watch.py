"""The checkpoint watcher on a real file system (inotify through watchfiles)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from mcpexec.workflows.watch import CheckpointWatcher

pytestmark = pytest.mark.anyio

WAIT_S = 10.0


async def _woken(event: asyncio.Event) -> None:
    await asyncio.wait_for(event.wait(), WAIT_S)
    event.clear()


async def test_the_watch_follows_the_checkpoint_down_as_its_folder_appears(
    tmp_path: Path,
) -> None:
    woke = asyncio.Event()
    watcher = CheckpointWatcher(woke.set)
    checkpoint = tmp_path / "checkpoints" / "phase.json"
    try:
        watcher.watch([checkpoint])  # no folder yet: the workspace is watched
        await _registered(watcher, woke)
        (tmp_path / "checkpoints").mkdir()
        await _woken(woke)

        watcher.watch([checkpoint])  # the engine's next tick: now the folder is watched
        await _registered(watcher, woke)
        tmp = checkpoint.with_suffix(".tmp")
        tmp.write_text('{"status": "done"}')
        os.replace(tmp, checkpoint)  # a careful agent's write: a rename onto the name
        await _woken(woke)
        assert watcher.working
    finally:
        await watcher.close()


async def test_nothing_to_watch_runs_no_task(tmp_path: Path) -> None:
    watcher = CheckpointWatcher(lambda: None)
    watcher.watch([tmp_path / "a.json"])
    await asyncio.wait_for(watcher.ready.wait(), WAIT_S)
    watcher.watch([])
    assert not watcher.ready.is_set()
    await watcher.close()


async def _registered(watcher: CheckpointWatcher, woke: asyncio.Event) -> None:
    """The watch is registered, and asked for the one tick that covers what came before."""
    await asyncio.wait_for(watcher.ready.wait(), WAIT_S)
    await _woken(woke)
