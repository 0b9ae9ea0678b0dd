"""``mcpexec spool status`` and the retention of completed/ and failed/."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import watchfiles

from mcpexec.spool.files import SpoolDirs
from mcpexec.spool.retention import purge_old
from mcpexec.spool.status import spool_status

from .conftest import MCPEXEC, drop, engine, running, wait_log, wait_path

pytestmark = pytest.mark.anyio

DAY = 86400.0


def _age(path: Path, days: float) -> None:
    old = time.time() - days * DAY
    os.utime(path, (old, old), follow_symlinks=False)


def test_purge_old_removes_only_entries_past_the_age(tmp_path: Path) -> None:
    dirs = SpoolDirs(tmp_path / "queue")
    dirs.create()
    keep = dirs.completed / "new.json"
    keep.write_text("{}")
    old_file = dirs.completed / "old.json"
    old_file.write_text("{}")
    _age(old_file, 10)
    old_link = dirs.failed / "evil.json"
    os.symlink(tmp_path / "outside", old_link)
    (tmp_path / "outside").write_text("must survive")
    _age(old_link, 10)
    old_dir = dirs.failed / "dir.json"
    old_dir.mkdir()
    (old_dir / "inner").write_text("x")
    _age(old_dir, 10)
    old_pending = dirs.pending / "waiting.json"
    old_pending.write_text("{}")
    _age(old_pending, 10)
    assert purge_old(dirs, 7 * DAY) == 3
    assert keep.exists()
    assert not old_file.exists()
    assert not os.path.lexists(old_link)
    assert not old_dir.exists()
    assert (tmp_path / "outside").read_text() == "must survive"
    assert old_pending.exists()  # only results expire


async def test_the_daemon_applies_retention_and_results_count_from_their_finish(
    tmp_path: Path,
) -> None:
    root = tmp_path / "queue"
    dirs = SpoolDirs(root)
    dirs.create()
    stale = dirs.completed / "stale.json"
    stale.write_text("{}")
    _age(stale, 3)
    async with engine(tmp_path / "home", spool_retention_days=2) as app, running(app, root):
        await wait_path(stale, gone=True)
        # A job dropped long ago (old mtime) is not expired the moment it finishes.
        path = drop(root, "old-drop.sh", "true\n")
        _age(path, 5)
        await wait_path(root / "completed" / "old-drop.sh.result.json")
    assert (root / "completed" / "old-drop.sh").exists()
    assert time.time() - os.stat(root / "completed" / "old-drop.sh").st_mtime < DAY
    assert any(
        " expired removed=1" in line for line in (root / "daemon.log").read_text().splitlines()
    )


async def test_status_counts_and_current_jobs(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    gate = tmp_path / "gate"
    wait = f"for i in $(seq 400); do [ -e {gate} ] && exit 0; sleep 0.05; done; exit 1"
    async with (
        engine(tmp_path / "home", workers=1, spool_parallel=1) as app,
        running(app, root),
    ):
        drop(root, "ok.json", {"command": "true", "result_file": "out.txt"})
        drop(root, "ok.sh", "true\n")
        drop(root, "bad.json", "{")
        drop(root, "no.json", {"command": "exit 1"})
        for target in ("completed/ok.json", "completed/ok.sh.result.json", "failed/no.json"):
            await wait_path(root / target)
        await wait_path(root / "failed" / "bad.json.result.json")
        drop(root, "hold.json", {"command": wait})
        await wait_log(root, "picked up hold.json")
        await _state_shows_run(root, "hold.json")
        drop(root, "next.json", {"command": "true"})
        proc = await asyncio.to_thread(_status, root, "--json")
        human = await asyncio.to_thread(_status, root)
        gate.touch()
        await wait_path(root / "completed" / "next.json")
    status = json.loads(proc.stdout)
    assert (status["pending"], status["running"]) == (1, 1)
    assert (status["completed"], status["failed"]) == (2, 2)
    assert status["daemons"] == [os.getpid()]
    assert [j["file"] for j in status["jobs"]] == ["hold.json"]
    assert status["jobs"][0]["run_id"]
    assert "pending 1  running 1  completed 2  failed 2" in human.stdout
    assert "hold.json" in human.stdout


async def _state_shows_run(root: Path, name: str, timeout_s: float = 30.0) -> None:
    """Until the daemon's state file names the run of ``name`` (awaiting inotify events)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s

    def shown() -> bool:
        return any(j["file"] == name and j.get("run_id") for j in spool_status(root).jobs)

    if shown():
        return
    async for _ in watchfiles.awatch(
        root, step=5, debounce=50, rust_timeout=200, yield_on_timeout=True, recursive=False
    ):
        if shown() or loop.time() > deadline:
            break
    assert shown(), f"the state file never showed the run of {name}"


def _status(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MCPEXEC, "spool", "status", str(root), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_status_of_a_missing_directory_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [MCPEXEC, "spool", "status", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "is not a directory" in proc.stderr
    assert "Traceback" not in proc.stderr
