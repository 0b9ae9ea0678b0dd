"""Workflow steps under the bwrap sandbox: the workspace is bound writable at its own path (and
given to the sandbox's user), another workflow run's workspace stays invisible."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from mcpexec.app import App
from mcpexec.bootstrap import build_app
from mcpexec.executor.probe import probe
from mcpexec.models import Stream
from mcpexec.settings import Settings
from servers import missing
from workflow_helpers import ADMIN, FAKE_CLAUDE, agent_step, until

pytestmark = pytest.mark.anyio

SANDBOXED = json.dumps(
    {
        "name": "sandboxed",
        "params": {"type": "object", "properties": {"peek": {"type": "string"}}},
        "steps": {
            "write": {
                "shell": "mkdir -p instructions && echo 'You test.' > instructions/tester.md"
                " && echo secret > secret.txt && id -u > uid.txt",
            },
            "tester": agent_step("tester", ["write"]),
            "peek": {
                "needs": ["tester"],
                "shell": 'if [ -n "$MCPEXEC_PARAM_PEEK" ]; then cat "$MCPEXEC_PARAM_PEEK"; fi',
            },
        },
    }
)


@pytest.fixture
def agent_dir() -> Iterator[Path]:
    """The fake agent where the sandbox can see it (the checkout may be out of its reach)."""
    folder = Path(
        tempfile.mkdtemp(prefix="mcpexec-fake-agent-", dir="/var/tmp")
    )  # not /tmp: a tmpfs
    try:
        folder.chmod(0o755)
        shutil.copy(FAKE_CLAUDE, folder / "claude")
        yield folder
    finally:
        shutil.rmtree(folder)


@asynccontextmanager
async def sandboxed_app(tmp_path: Path, agent_dir: Path) -> AsyncIterator[App]:
    found = probe("default")
    if found.bwrap_error is not None:
        missing("bwrap", found.bwrap_error)
    settings = Settings(
        home=tmp_path / "home",
        sandbox="default",
        sandbox_ro_binds=[str(agent_dir)],
        poll_s=0.05,
        heartbeat_s=0.2,
        kill_grace_s=0.2,
        shutdown_grace_s=0.5,
    )
    app = build_app(settings)
    await app.open()
    await app.start_background(workers=2, scheduler=True)
    try:
        yield app
    finally:
        await asyncio.wait_for(app.close(), 20)


async def test_sandboxed_steps_write_their_workspace_and_nothing_else(
    tmp_path: Path, agent_dir: Path
) -> None:
    async with sandboxed_app(tmp_path, agent_dir) as app:
        await app.workflows.define(SANDBOXED.replace(FAKE_CLAUDE, str(agent_dir / "claude")), ADMIN)
        first = await app.workflows.start("sandboxed", {}, ADMIN)
        done = await until(app, first.id, "completed", timeout_s=60)
        workspace = Path(done.state["workspace"])
        assert (workspace / "secret.txt").read_text() == "secret\n"
        if os.geteuid() == 0:  # the steps ran as the sandbox's user, not as root
            assert (workspace / "uid.txt").read_text() == "65534\n"
        assert done.state["steps"]["tester"]["checkpoint"]["status"] == "complete"
        # the second run's step cannot see the first run's workspace
        peek = {"peek": str(workspace / "secret.txt")}
        second = await app.workflows.start("sandboxed", peek, ADMIN)
        failed = await until(app, second.id, "failed", timeout_s=60)
        assert failed.state["steps"]["peek"]["status"] == "failed"
        attempts = await app.attempts(failed.state["steps"]["peek"]["run_id"], ADMIN)
        assert "bwrap" in (attempts[-1].isolation or "")


def _git(cwd: Path, *args: str) -> str:
    import subprocess

    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)
    return done.stdout.decode().strip()


async def test_a_sandboxed_step_commits_in_its_git_workspace(
    tmp_path: Path, agent_dir: Path
) -> None:
    # The workspace is a clone whose .git lives inside it: the step, seeing only its
    # workspace, commits; the engine publishes the branch into the repository.
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    who = ("-c", "user.name=t", "-c", "user.email=t@t")
    _git(repo, *who, "commit", "-q", "--allow-empty", "-m", "0")
    flow = {
        "name": "commits",
        "workspace": {"git": True, "repo": str(repo)},
        "steps": {
            "work": {
                "shell": "echo done > work.txt && git add work.txt && "
                "git -c user.name=s -c user.email=s@s commit -q -m 'from the sandbox'"
            }
        },
    }
    async with sandboxed_app(tmp_path, agent_dir) as app:
        await app.workflows.define(json.dumps(flow), ADMIN)
        rec = await app.workflows.start("commits", {}, ADMIN)
        done = await until(app, rec.id, "completed", timeout_s=60)
        attempts = await app.attempts(done.state["steps"]["work"]["run_id"], ADMIN)
        assert "bwrap" in (attempts[-1].isolation or "")
        subject = _git(repo, "log", "-1", "--format=%s", f"refs/heads/workflow/{rec.id}")
        assert subject == "from the sandbox"


async def test_a_workspace_made_unwritable_fails_the_step_clearly_and_retry_recovers(
    tmp_path: Path, agent_dir: Path
) -> None:
    # Seed 004's error injection "a workspace made unwritable". Under the sandbox the steps
    # are not root (as root they run as the sandbox's user), so the mode holds for them.
    flow = {
        "name": "unwritable",
        "steps": {
            "first": {"shell": "echo one > one.txt"},
            "hold": {"needs": ["first"], "gate": "manual"},
            "second": {"needs": ["hold"], "shell": "echo two > two.txt"},
        },
    }
    async with sandboxed_app(tmp_path, agent_dir) as app:
        await app.workflows.define(json.dumps(flow), ADMIN)
        rec = await app.workflows.start("unwritable", {}, ADMIN)
        waiting = await until(app, rec.id, "waiting", timeout_s=60)
        workspace = Path(waiting.state["workspace"])
        os.chmod(workspace, 0o500)  # read and enter only
        try:
            await app.workflows.act(rec.id, "approve", ADMIN, "hold")
            failed = await until(app, rec.id, "failed", timeout_s=60)
            step = failed.state["steps"]["second"]
            assert step["status"] == "failed"
            assert "exit" in step["error"]  # its run failed: the shell's own exit code
            stderr, _ = await app.store.read_log(step["run_id"], Stream.STDERR, 0, 4096)
            assert b"Permission denied" in stderr
        finally:
            os.chmod(workspace, 0o700)
        await app.workflows.act(rec.id, "retry", ADMIN, "second")
        done = await until(app, rec.id, "completed", timeout_s=60)
        assert (Path(done.state["workspace"]) / "two.txt").read_text() == "two\n"
