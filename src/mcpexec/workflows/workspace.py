"""A workflow run's workspace (issue 16): a private directory, or a clone of the repository on
its own branch (published back to the repository when steps finish), and the ``git: reset``
rollback that keeps ``preserve`` globs.

git runs with a fixed argv (never a shell) and a minimal environment.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import shutil
import tempfile
from pathlib import Path
from typing import TypeVar

from mcpexec.errors import InvalidRequest
from mcpexec.workflows.spec import RunStep, WorkflowDefinition

R = TypeVar("R", bound=RunStep)

GIT_TIMEOUT_S = 60.0
_GIT_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "mcpexec",
    "GIT_AUTHOR_EMAIL": "mcpexec@localhost",
    "GIT_COMMITTER_NAME": "mcpexec",
    "GIT_COMMITTER_EMAIL": "mcpexec@localhost",
    "HOME": "/nonexistent",
    # The engine's git works in clones it gave the sandbox's user and in the operator's
    # repository: both are trusted here, whoever owns them (git's ownership check is for
    # repositories a user stumbles into).
    "GIT_CONFIG_COUNT": "1",
    "GIT_CONFIG_KEY_0": "safe.directory",
    "GIT_CONFIG_VALUE_0": "*",
}


async def git(cwd: str, *args: str) -> str:
    """Run git; its stdout, or ``InvalidRequest`` with its error."""
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        env=_GIT_ENV,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(GIT_TIMEOUT_S):  # not wait_for: see mcpexec.aio
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise InvalidRequest(f"git {args[0]}: timed out") from None
    if proc.returncode != 0:
        message = err.decode(errors="replace").strip().splitlines()
        raise InvalidRequest(f"git {args[0]}: {message[-1] if message else proc.returncode}")
    return out.decode(errors="replace").strip()


async def prepare(
    root: Path, run_id: str, definition: WorkflowDefinition, checkpoints: list[str]
) -> tuple[str, str | None]:
    """Create the workspace (idempotent: after a crash it is reused) and the checkpoint
    folders (0700); returns ``(path, branch)``."""
    path = root / run_id
    branch = None
    spec = definition.workspace
    exists = _make_root(root, path, make=not spec.git)
    if spec.git:
        if not spec.repo:
            raise InvalidRequest("workspace: git: true needs 'repo'", field="workspace.repo")
        branch = f"workflow/{run_id}"
        if not exists:
            # A clone, not a worktree: its .git is inside the workspace, so a sandboxed step
            # (which sees only the workspace) can commit; --local hard-links the objects.
            await git(str(root), "clone", "-q", "--local", spec.repo, str(path))
            await git(str(path), "checkout", "-q", "-b", branch)
            await publish(str(path), branch)
    _make_folders(path, checkpoints)
    return str(path), branch


async def publish(workspace: str, branch: str) -> str:
    """The workspace's commit onto ``branch`` of the repository it was cloned from (forced: a
    rollback moves it back); returns the commit."""
    commit = await head(workspace)
    await git(workspace, "push", "-q", "--force", "origin", f"{commit}:refs/heads/{branch}")
    return commit


async def published(workspace: str, branch: str) -> str | None:
    """The commit ``branch`` has in the repository now (``None``: no such branch)."""
    repo = await git(workspace, "remote", "get-url", "origin")
    try:
        return await git(repo, "rev-parse", "-q", "--verify", f"refs/heads/{branch}^{{commit}}")
    except InvalidRequest:
        return None


def _make_root(root: Path, path: Path, *, make: bool) -> bool:
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    exists = path.exists()
    if make:
        path.mkdir(mode=0o700, exist_ok=True)
    return exists


def _make_folders(path: Path, checkpoints: list[str]) -> None:
    os.chmod(path, 0o700)
    for file in checkpoints:
        folder = path.joinpath(*file.split("/")[:-1])
        if folder != path:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)


async def head(workspace: str) -> str:
    return await git(workspace, "rev-parse", "HEAD")


async def git_reset(workspace: str, commit: str, preserve: list[str]) -> list[str]:
    """Reset the worktree to ``commit`` (tracked and untracked changes), keeping the files
    matching ``preserve``; returns the preserved paths."""
    keep = _matching(workspace, preserve)
    with tempfile.TemporaryDirectory(prefix="mcpexec-preserve-") as saved:
        for rel in keep:
            target = Path(saved, rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(workspace, rel), target, follow_symlinks=False)
        await git(workspace, "reset", "--hard", commit)
        await git(workspace, "clean", "-fdq")
        for rel in keep:
            target = Path(workspace, rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(saved, rel), target, follow_symlinks=False)
    return keep


def _matching(workspace: str, patterns: list[str]) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(workspace):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            rel = os.path.relpath(os.path.join(dirpath, name), workspace)
            if any(_glob(rel, p) for p in patterns):
                found.append(rel)
    return sorted(found)


def _glob(rel: str, pattern: str) -> bool:
    if pattern.endswith("/**"):
        return rel.startswith(pattern[:-3] + "/")
    return fnmatch.fnmatchcase(rel, pattern)


def remove(root: Path, run_id: str, repo: str | None) -> None:
    """Nothing yet: workspaces are kept for inspection (documented)."""
    del root, run_id, repo


def checkpoint_files(definition: WorkflowDefinition) -> list[str]:
    return [s.checkpoint.file for s in definition.steps.values() if s.checkpoint is not None]


def wrap_step(step: R) -> R:
    """The step with its run starting in the workspace (``$MCPEXEC_WORKSPACE``)."""
    cd = 'cd "$MCPEXEC_WORKSPACE" || exit 97'
    if step.shell is not None:
        return step.model_copy(update={"shell": f"{cd}\n{step.shell}"})
    if step.command is not None:
        return step.model_copy(
            update={"command": ["/bin/sh", "-c", f'{cd}; exec "$@"', "sh", *step.command]}
        )
    if step.script is not None:
        prefix = {
            "python": 'import os; os.chdir(os.environ["MCPEXEC_WORKSPACE"])\n',
            "node": "process.chdir(process.env.MCPEXEC_WORKSPACE);\n",
        }.get(step.script.language, cd + "\n")
        script = step.script.model_copy(update={"source": prefix + step.script.source})
        return step.model_copy(update={"script": script})
    return step
