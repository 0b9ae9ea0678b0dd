"""Exactly once across crashes: claims left in .processing/ are resumed on start, with the same
run when it had been submitted; real ``mcpexec spool`` processes killed with SIGKILL mid-job,
and two processes on one directory."""

from __future__ import annotations

import asyncio
import os
import random
import select
import signal
from pathlib import Path

import pytest

from mcpexec.models import RunFilter
from mcpexec.spool.daemon import spool_principal
from mcpexec.spool.files import SpoolDirs, adopt
from mcpexec.spool.formats import parse_job

from .conftest import (
    SpoolProcess,
    drop,
    engine,
    log_lines,
    result_of,
    running,
    wait_log,
    wait_path,
)

pytestmark = pytest.mark.anyio


def _gated(name: str, side: Path, gate: Path) -> dict[str, str]:
    """A job that records its start, waits for ``gate`` (bounded: 20 s), records its end."""
    return {
        "command": (
            f"echo start >> {side}/{name}.starts; echo $$ >> {side}/{name}.pids; "
            f"for i in $(seq 400); do [ -e {gate} ] && break; sleep 0.05; done; "
            f"echo done >> {side}/{name}.done"
        )
    }


def _wait_exit(pid: int, timeout_s: float) -> None:
    """Until process ``pid`` (not our child) has exited: its pidfd becomes readable."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        ready, _, _ = select.select([fd], [], [], timeout_s)
        assert ready, f"process {pid} still alive after {timeout_s}s"
    finally:
        os.close(fd)


def _lines(root: Path) -> list[str]:
    return log_lines(root) if (root / "daemon.log").exists() else []


def _count(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


async def test_claims_in_processing_are_resumed_once(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    side = tmp_path / "side"
    side.mkdir()
    dirs = SpoolDirs(root)
    dirs.create()
    for name in ("unsubmitted.json", "submitted.json"):
        body = f'{{"command": "echo {name} >> {side}/log"}}'
        (dirs.processing / name).write_text(body)
    async with engine(tmp_path / "home") as app:
        principal = spool_principal(app.settings.spool_tenant, dirs.root)
        # A crash after the submit, before the result: the run exists (and even finished).
        # It was submitted with another default timeout (60 s, the setting is 300 s): a setting
        # changed across the restart must not turn the replay into a second run.
        claimed = adopt(dirs, "submitted.json", 1 << 20)
        key = claimed.key(dirs, principal.tenant)
        job = parse_job("submitted.json", claimed.data, max_bytes=1 << 20, default_timeout_s=60)
        claimed.release()
        earlier, _ = await app.submit(
            job.request.model_copy(update={"idempotency_key": key}), principal
        )
        await app.wait(earlier.id, principal, 30)
        async with running(app, root):
            await wait_path(root / "completed" / "unsubmitted.json")
            await wait_path(root / "completed" / "submitted.json")
        page = await app.list_runs(principal, RunFilter(), limit=10)
    assert sorted((side / "log").read_text().split()) == ["submitted.json", "unsubmitted.json"]
    assert result_of(root / "completed" / "submitted.json")["result"]["run_id"] == earlier.id
    assert len(page.runs) == 2
    assert os.listdir(dirs.processing) == []
    recovered = [line for line in log_lines(root) if " recovered " in line]
    assert len(recovered) == 2
    assert any("submitted.json" in line and "submitted=earlier" in line for line in recovered)


async def test_the_same_file_dropped_again_is_a_new_job(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    side = tmp_path / "side"
    async with engine(tmp_path / "home") as app, running(app, root):
        job = {"command": f"echo x >> {side}"}
        drop(root, "again.json", job)
        await wait_path(root / "completed" / "again.json")
        first = result_of(root / "completed" / "again.json")["result"]["run_id"]
        os.unlink(root / "completed" / "again.json")
        drop(root, "again.json", job)
        await wait_path(root / "completed" / "again.json")
        second = result_of(root / "completed" / "again.json")["result"]["run_id"]
    assert first != second
    assert _count(side) == 2


@pytest.mark.slow
async def test_kill_9_mid_job_then_restart_finishes_each_job_once(
    tmp_path: Path, spool_procs: list[SpoolProcess]
) -> None:
    root, home, side, gate = (
        tmp_path / "queue",
        tmp_path / "home",
        tmp_path / "side",
        tmp_path / "gate",
    )
    side.mkdir()
    env = {"MCPEXEC_WORKERS": "1", "MCPEXEC_SPOOL_PARALLEL": "2"}
    first = SpoolProcess(root, home, **env)
    spool_procs.append(first)
    first.start()
    await wait_path(root / "daemon.log")
    drop(root, "done-before.json", {"command": f"echo done >> {side}/done-before.json.done"})
    await wait_path(root / "completed" / "done-before.json")
    drop(root, "mid.json", _gated("mid.json", side, gate))
    await wait_path(side / "mid.json.starts")
    # mid.json is running; queued.json is claimed and submitted but waits for the only slot;
    # later.json stays in pending/ (two in flight at most).
    drop(root, "queued.json", _gated("queued.json", side, gate))
    await wait_path(root / ".processing" / "queued.json")
    drop(root, "later.sh", f"echo done >> {side}/later.sh.done\n")
    first.stop(signal.SIGKILL)
    # The engine's watchdog kills the dead spool's tasks within about a second; open the gate
    # only then, or the orphaned first attempt could still finish (at-least-once).
    for pid in (side / "mid.json.pids").read_text().split():
        _wait_exit(int(pid), 10)

    second = SpoolProcess(root, home, **env)
    spool_procs.append(second)
    second.start()
    gate.touch()
    for target in ("mid.json", "queued.json", "later.sh.result.json"):
        await wait_path(root / "completed" / target, 60)
    assert second.stop() == 0

    assert _count(side / "done-before.json.done") == 1
    for name in ("mid.json", "queued.json", "later.sh"):
        assert _count(side / f"{name}.done") == 1, name
    mid = result_of(root / "completed" / "mid.json")["result"]
    # Killed mid-run, the first attempt was lost with its worker and retried once.
    assert mid["attempts"] == _count(side / "mid.json.starts") == 2
    assert mid["status"] == "completed"
    assert result_of(root / "completed" / "queued.json")["result"]["attempts"] == 1
    async with engine(home, workers=0) as app:
        principal = spool_principal(app.settings.spool_tenant, root)
        runs = (await app.list_runs(principal, RunFilter(), limit=50)).runs
    assert sorted(r.labels["spool/file"] for r in runs) == [
        "done-before.json",
        "later.sh",
        "mid.json",
        "queued.json",
    ]
    assert os.listdir(root / ".processing") == []
    assert os.listdir(root / "pending") == []
    assert any(" recovered mid.json " in line for line in log_lines(root))


@pytest.mark.slow
async def test_two_spool_processes_on_one_directory_take_each_job_once(
    tmp_path: Path, spool_procs: list[SpoolProcess]
) -> None:
    root, home, side = tmp_path / "queue", tmp_path / "home", tmp_path / "side"
    side.mkdir()
    for _ in range(2):
        proc = SpoolProcess(root, home, MCPEXEC_WORKERS="2")
        spool_procs.append(proc)
        proc.start()
    await wait_path(root / "daemon.log")
    names = [f"j{i:02d}.json" for i in range(40)]
    for name in names:
        drop(root, name, {"command": f"echo {name} >> {side}/log"})
    for name in names:
        await wait_path(root / "completed" / name, 60)
    for proc in spool_procs:
        assert proc.stop() == 0
    assert sorted((side / "log").read_text().split()) == names
    picked = [line for line in log_lines(root) if " picked up " in line]
    assert len(picked) == len(names)
    run_ids = {result_of(root / "completed" / n)["result"]["run_id"] for n in names}
    assert len(run_ids) == len(names)


async def test_a_stopped_spool_leaves_claims_for_the_next_start(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    gate = tmp_path / "gate"
    side = tmp_path / "side"
    side.mkdir()
    async with engine(tmp_path / "home") as app:
        async with running(app, root):
            drop(root, "long.json", _gated("long", side, gate))
            await wait_path(side / "long.starts")
        assert os.listdir(root / ".processing") == ["long.json"]
        gate.touch()
        async with running(app, root):
            await wait_path(root / "completed" / "long.json")
    assert _count(side / "long.done") == 1
    assert _count(side / "long.starts") == 1


@pytest.mark.slow
async def test_kill_9_at_random_points_leaves_one_run_and_one_result_per_file(
    tmp_path: Path, spool_procs: list[SpoolProcess]
) -> None:
    root, home, side = tmp_path / "queue", tmp_path / "home", tmp_path / "side"
    side.mkdir()
    names = [f"k{i:02d}.json" for i in range(30)]
    for name in names:
        drop(root, name, {"command": f"echo {name} >> {side}/log; sleep 0.05"})
    rng = random.Random(15)
    for _ in range(3):
        proc = SpoolProcess(root, home, MCPEXEC_WORKERS="2")
        spool_procs.append(proc)
        finished = sum(" finished " in line for line in _lines(root))
        proc.start()
        # Kill in the middle of the work: once this process finished a job, after a random
        # further delay (claims, submits, runs and result writes are all under way then).
        await wait_log(root, " finished ", 120, count=finished + 1)
        await asyncio.sleep(rng.uniform(0, 0.3))
        proc.stop(signal.SIGKILL)
    final = SpoolProcess(root, home, MCPEXEC_WORKERS="2")
    spool_procs.append(final)
    final.start()
    for name in names:
        await wait_path(root / "completed" / name, 120)
    assert final.stop() == 0
    assert os.listdir(root / ".processing") == []
    assert os.listdir(root / "pending") == []
    async with engine(home, workers=0) as app:
        principal = spool_principal(app.settings.spool_tenant, root)
        runs = (await app.list_runs(principal, RunFilter(), limit=100)).runs
    # One run per job file, whatever the moment of each kill; each ran (at least once: an
    # attempt killed with its worker is retried) and its result names that run.
    assert sorted(r.labels["spool/file"] for r in runs) == names
    by_file = {r.labels["spool/file"]: r.id for r in runs}
    for name in names:
        assert result_of(root / "completed" / name)["result"]["run_id"] == by_file[name]
    assert set((side / "log").read_text().split()) == set(names)
    # The kills did land mid-work: claims were left for the next process to resume.
    assert any(" recovered " in line for line in log_lines(root))
