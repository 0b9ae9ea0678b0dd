"""Bad input never runs and is never lost; non-files are refused unopened; a file still being
written is not taken."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from .conftest import drop, engine, result_of, running, wait_path

pytestmark = pytest.mark.anyio


async def test_invalid_job_formats_go_to_failed_unrun(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    marker = tmp_path / "ran"
    touch = f"touch {marker}"
    cases: dict[str, tuple[str | bytes, str]] = {
        "broken.json": ("{not json", "invalid_json"),
        "list.json": ('["echo", "hi"]', "invalid_json"),
        "job.yaml": (f"command: {touch}", "unknown_format"),
        "noext": (touch, "unknown_format"),
        "big.sh": (touch + "\n" + "#" * 5000, "job_too_large"),
        "binary.sh": (touch.encode() + b"\n\0\x01\x02", "binary_job"),
        "latin1.txt": (touch.encode() + b" # caf\xe9", "binary_job"),
        "badargs.json": ('{"command": "touch", "args": [1, 2]}', "invalid_spec"),
        "badenv.json": (f'{{"command": "{touch}", "env": {{"1X": "y"}}}}', "invalid_spec"),
        "badtimeout.json": (f'{{"command": "{touch}", "timeout_s": -1}}', "invalid_spec"),
        "nocommand.json": ('{"description": "nothing to run"}', "invalid_spec"),
        "task.json": ('{"task": "backup", "params": {}}', "invalid_spec"),
        "empty.sh": ("   \n", "invalid_spec"),
    }
    async with engine(tmp_path / "home", spool_max_job_bytes=4096) as app, running(app, root):
        for name, (content, _) in cases.items():
            drop(root, name, content)
        for name in cases:
            sidecar = root / "failed" / f"{name}.result.json"
            await wait_path(sidecar if not name.endswith(".json") else root / "failed" / name)
        drop(root, "after.json", {"command": "true"})
        await wait_path(root / "completed" / "after.json")
    for name, (content, code) in cases.items():
        sidecar = root / "failed" / f"{name}.result.json"
        if sidecar.exists():
            result = result_of(sidecar)["result"]
            # Nothing is lost: the file itself is kept as it was dropped.
            raw = content.encode() if isinstance(content, str) else content
            assert (root / "failed" / name).read_bytes() == raw
        else:
            record = result_of(root / "failed" / name)
            result = record["result"]
        assert result["status"] == "invalid", name
        assert result["error"]["code"] == code, (name, result)
        assert result["error"]["message"].startswith(name), result
    assert not marker.exists()
    # The JSON object that failed validation keeps its fields beside the result.
    assert result_of(root / "failed" / "badargs.json")["args"] == [1, 2]


def _shadow() -> bytes:
    return Path("/etc/shadow").read_bytes() if os.access("/etc/shadow", os.R_OK) else b""


async def test_symlink_to_etc_shadow_is_refused_unfollowed(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    (root / "pending").mkdir(parents=True)
    os.symlink("/etc/shadow", root / "pending" / "evil.json")
    os.symlink("/etc/shadow", root / "pending" / "evil.sh")
    os.mkfifo(root / "pending" / "fifo.json")
    os.mkdir(root / "pending" / "dir.json")
    async with engine(tmp_path / "home") as app, running(app, root):
        for name in ("evil.json", "evil.sh", "fifo.json", "dir.json"):
            await wait_path(root / "failed" / f"{name}.result.json")
        # The FIFO did not block the spool: the next job still runs.
        drop(root, "after.json", {"command": "true"})
        await wait_path(root / "completed" / "after.json")
    shadow = _shadow()
    for name, what in (
        ("evil.json", "a symlink"),
        ("evil.sh", "a symlink"),
        ("fifo.json", "a FIFO"),
        ("dir.json", "a directory"),
    ):
        text = (root / "failed" / f"{name}.result.json").read_bytes()
        result = result_of(root / "failed" / f"{name}.result.json")["result"]
        assert result["status"] == "invalid"
        assert result["error"]["code"] == "not_regular_file"
        assert what in result["error"]["message"]
        if shadow:
            assert shadow[:20] not in text
    # Moved as they were (a symlink stays a symlink), never opened.
    assert os.readlink(root / "failed" / "evil.json") == "/etc/shadow"
    assert stat.S_ISFIFO(os.lstat(root / "failed" / "fifo.json").st_mode)
    assert os.listdir(root / "pending") == []


async def test_half_written_file_is_not_taken_early(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    marker = tmp_path / "slow-ran"
    async with engine(tmp_path / "home") as app, running(app, root):
        path = root / "pending" / "slow.json"
        with path.open("w") as writer:  # written in place, not write-then-rename
            writer.write('{"command": "touch ')
            writer.flush()
            # A later, complete job is taken: the spool has looked at pending/ since.
            drop(root, "later.json", {"command": "true"})
            await wait_path(root / "completed" / "later.json")
            assert path.exists()
            assert not (root / "failed" / "slow.json").exists()
            writer.write(f'{marker}"}}')
        await wait_path(root / "completed" / "slow.json")
    assert marker.exists()
    assert result_of(root / "completed" / "slow.json")["result"]["status"] == "completed"


async def test_dotfiles_and_tmp_files_are_ignored(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    pending = root / "pending"
    pending.mkdir(parents=True)
    (pending / ".hidden.json").write_text('{"command": "true"}')
    (pending / "part.json.tmp").write_text('{"command": "true"}')
    async with engine(tmp_path / "home") as app, running(app, root):
        drop(root, "real.json", {"command": "true"})
        await wait_path(root / "completed" / "real.json")
    assert sorted(os.listdir(pending)) == [".hidden.json", "part.json.tmp"]


async def test_directories_are_private_and_world_writable_warned(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    (loose / "pending").mkdir(parents=True)
    os.chmod(loose / "pending", 0o777)
    async with engine(tmp_path / "home") as app:
        async with running(app, tmp_path / "tight"):
            pass
        async with running(app, loose):
            pass
    for sub in ("", "pending", ".processing", "completed", "failed"):
        assert stat.S_IMODE(os.stat(tmp_path / "tight" / sub).st_mode) == 0o700, sub
    assert "world-writable" in (loose / "daemon.log").read_text()
    assert "world-writable" not in (tmp_path / "tight" / "daemon.log").read_text()
