"""Jobs run in parallel up to the engine's slots, and in priority-then-oldest order."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from .conftest import drop, engine, log_lines, result_of, running, wait_path

pytestmark = pytest.mark.anyio


async def test_jobs_run_in_parallel_up_to_the_slots(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    meet = tmp_path / "meet"
    meet.mkdir()
    # Each job announces itself, then waits (bounded, 10 s) until all four have: only four
    # jobs running at the same time can all complete.
    script = (
        f"touch {meet}/$0; for i in $(seq 200); do "
        f'[ "$(ls {meet} | wc -l)" -ge 4 ] && exit 0; sleep 0.05; done; exit 1'
    )
    async with engine(tmp_path / "home", workers=4) as app, running(app, root) as spool:
        assert spool.parallel == 4
        for i in range(4):
            drop(root, f"p{i}.json", {"command": "sh", "args": ["-c", script, f"p{i}"]})
        for i in range(4):
            await wait_path(root / "completed" / f"p{i}.json")
    assert sorted(os.listdir(meet)) == ["p0", "p1", "p2", "p3"]


async def test_priority_then_oldest_first(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    order = tmp_path / "order"
    now = time.time()
    jobs = {
        "a-low.json": (-5, now - 30),
        "b-normal-new.json": (0, now - 10),
        "c-high.json": ("high", now - 5),
        "d-normal-old.json": (0, now - 20),
        "e-script.sh": (None, now - 15),  # text jobs have the default priority 0
        "f-top.json": (50, now - 1),
    }
    for name, (priority, mtime) in jobs.items():
        body = f"echo {name} >> {order}"
        if priority is None:
            path = drop(root, name, body + "\n")
        else:
            path = drop(root, name, {"command": body, "priority": priority})
        os.utime(path, (mtime, mtime))
    # One slot and one job in flight: the spool alone decides the order.
    async with engine(tmp_path / "home", workers=1) as app, running(app, root) as spool:
        assert spool.parallel == 1
        for name in jobs:
            target = (
                root / "completed" / (name if name.endswith(".json") else name + ".result.json")
            )
            await wait_path(target)
    assert order.read_text().split() == [
        "f-top.json",
        "c-high.json",
        "d-normal-old.json",
        "e-script.sh",
        "b-normal-new.json",
        "a-low.json",
    ]
    assert result_of(root / "completed" / "f-top.json")["result"]["status"] == "completed"


async def test_spool_parallel_setting_bounds_jobs_in_flight(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    gate = tmp_path / "gate"
    async with (
        engine(tmp_path / "home", workers=4, spool_parallel=2) as app,
        running(app, root) as spool,
    ):
        for i in range(3):
            wait = f"for i in $(seq 400); do [ -e {gate} ] && exit 0; sleep 0.05; done; exit 1"
            drop(root, f"g{i}.json", {"command": wait})
        await wait_path(root / ".processing" / "g0.json")
        await wait_path(root / ".processing" / "g1.json")
        assert spool.parallel == 2
        gate.touch()
        for i in range(3):
            await wait_path(root / "completed" / f"g{i}.json")
    # The third was taken only once a slot freed: its pickup follows a finish.
    lines = log_lines(root)
    picked = [i for i, line in enumerate(lines) if " picked up " in line]
    finished = [i for i, line in enumerate(lines) if " finished " in line]
    assert len(picked) == 3
    assert picked[1] < finished[0] < picked[2]
