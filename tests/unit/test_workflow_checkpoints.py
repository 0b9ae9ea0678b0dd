"""Reading checkpoints safely, and the agent providers' command lines (issue 16)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mcpexec.errors import InvalidRequest
from mcpexec.workflows.checkpoints import read_checkpoint, read_text
from mcpexec.workflows.providers import AgentContext, provider
from mcpexec.workflows.spec import AgentSpec, CheckpointSpec

SPEC = CheckpointSpec.model_validate(
    {"file": "checkpoints/done.json", "schema": {"type": "object", "required": ["status"]}}
)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    (tmp_path / "checkpoints").mkdir()
    return tmp_path


def test_valid_missing_and_made_private(ws: Path) -> None:
    assert read_checkpoint(str(ws), SPEC).status == "missing"
    target = ws / "checkpoints/done.json"
    target.write_text(json.dumps({"status": "complete"}))
    target.chmod(0o644)
    found = read_checkpoint(str(ws), SPEC)
    assert (found.status, found.content) == ("valid", {"status": "complete"})
    assert target.stat().st_mode & 0o777 == 0o600
    # read again, it is left alone: a chmod would be an inotify event the engine wakes on
    changed = target.stat().st_ctime_ns
    assert read_checkpoint(str(ws), SPEC).status == "valid"
    assert target.stat().st_ctime_ns == changed


@pytest.mark.parametrize(
    ("content", "why"),
    [("", "empty"), ('{"status": "compl', "not valid"), ('{"x": 1}', "'status' is a required")],
)
def test_bad_content_is_invalid(ws: Path, content: str, why: str) -> None:
    (ws / "checkpoints/done.json").write_text(content)
    found = read_checkpoint(str(ws), SPEC)
    assert found.status == "invalid"
    assert why in found.message
    assert found.stamp is not None


def test_a_symlink_file_or_folder_is_refused(ws: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.json"
    outside.write_text('{"status": "complete"}')
    (ws / "checkpoints/done.json").symlink_to(outside)
    assert "symlink" in read_checkpoint(str(ws), SPEC).message
    (ws / "checkpoints/done.json").unlink()
    (ws / "checkpoints").rmdir()
    (ws / "checkpoints").symlink_to(tmp_path)
    assert read_checkpoint(str(ws), SPEC).status == "invalid"


def test_a_fifo_is_refused_without_blocking(ws: Path) -> None:
    os.mkfifo(ws / "checkpoints/done.json")
    found = read_checkpoint(str(ws), SPEC)
    assert (found.status, "not a regular file" in found.message) == ("invalid", True)


def test_a_file_larger_than_the_cap_is_refused(ws: Path) -> None:
    small = CheckpointSpec.model_validate({"file": "checkpoints/done.json", "max_bytes": 10})
    (ws / "checkpoints/done.json").write_text(json.dumps({"status": "x" * 20}))
    assert "more than 10" in read_checkpoint(str(ws), small).message


def test_paths_outside_the_workspace_are_refused_at_definition() -> None:
    for bad in ("../x.json", "/etc/passwd", "a/../../b", "a//b"):
        with pytest.raises(ValueError, match="relative path"):
            CheckpointSpec.model_validate({"file": bad})


def test_instructions_are_read_beneath_the_workspace(ws: Path, tmp_path: Path) -> None:
    (ws / "role.md").write_text("You test.")
    assert read_text(str(ws), "role.md", 100) == "You test."
    (ws / "link.md").symlink_to(ws / "role.md")
    with pytest.raises(ValueError, match=r"link\.md"):
        read_text(str(ws), "link.md", 100)


def test_claude_code_creates_then_resumes_and_reads_the_session() -> None:
    claude = provider("claude_code")
    agent = AgentSpec.model_validate({"args": ["--model", "x"]})
    ctx = AgentContext(prompt_file="/w/prompt.md", workspace="/ws")
    assert claude.create_session(agent, ctx) == [
        "claude",
        "-p",
        "--output-format",
        "json",
        "--model",
        "x",
    ]
    assert claude.resume_session(agent, ctx, "s-1")[-2:] == ["--resume", "s-1"]
    out = json.dumps({"type": "result", "session_id": "abc", "result": "ok"}).encode()
    assert claude.session_id(b"noise\n" + out + b"\n") == "abc"
    assert claude.session_id(b"not json") is None
    assert claude.destroy_session(agent, "abc") is None


def test_command_provider_fills_its_template_with_engine_values_only() -> None:
    command = provider("command")
    agent = AgentSpec.model_validate(
        {"provider": "command", "argv": ["agent", "--in={prompt_file}", "--s", "{session}"]}
    )
    ctx = AgentContext(prompt_file="/w/p.md", workspace="/ws")
    assert command.create_session(agent, ctx) == ["agent", "--in=/w/p.md", "--s", ""]
    assert command.resume_session(agent, ctx, "7")[-1] == "7"
    with pytest.raises(InvalidRequest, match="unknown"):
        provider("nope")
