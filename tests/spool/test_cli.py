"""``mcpexec spool``: ``spool DIR`` is ``spool run DIR``; options reach the daemon."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mcpexec.cli import main

from .conftest import SpoolProcess, drop, result_of


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def record(root: Path, settings: Any, **kwargs: Any) -> None:
        calls.append({"root": root, "home": settings.home, **kwargs})

    monkeypatch.setattr("mcpexec.spool.standalone.run_standalone", record)
    return calls


@pytest.mark.parametrize("prefix", [["spool"], ["spool", "run"]])
def test_spool_dir_and_spool_run_dir_start_the_daemon(
    tmp_path: Path, started: list[dict[str, Any]], prefix: list[str]
) -> None:
    args = [*prefix, str(tmp_path / "q"), "--home", str(tmp_path / "h"), "--log-format", "json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert started == [
        {
            "root": tmp_path / "q",
            "home": tmp_path / "h",
            "workers": 4,
            "log_format": "json",
            "log_level": "warning",
            "drain": False,
        }
    ]


def test_no_workers(tmp_path: Path, started: list[dict[str, Any]]) -> None:
    result = CliRunner().invoke(main, ["spool", str(tmp_path), "--no-workers"])
    assert result.exit_code == 0, result.output
    assert started[0]["workers"] == 0


def test_spool_without_a_directory_is_a_usage_error(started: list[dict[str, Any]]) -> None:
    result = CliRunner().invoke(main, ["spool", "run"])
    assert result.exit_code == 2
    assert "DIRECTORY" in result.output
    assert started == []


def test_drain_runs_what_is_there_and_exits(tmp_path: Path) -> None:
    """``spool run DIR --drain`` (a real process): every job found is finished, then it exits."""
    root = tmp_path / "q"
    (root / "pending").mkdir(parents=True)
    drop(root, "a.json", {"command": "echo", "args": ["one"]})
    drop(root, "b.sh", "echo two")
    drop(root, "bad.json", "{not json")
    daemon = SpoolProcess(root, tmp_path / "home", "--drain")
    daemon.start()
    assert daemon.proc is not None
    assert daemon.proc.wait(timeout=120) == 0, daemon.log.read_text()
    assert result_of(root / "completed" / "a.json")["result"]["stdout"] == "one\n"
    assert result_of(root / "completed" / "b.sh.result.json")["result"]["stdout"] == "two\n"
    assert result_of(root / "failed" / "bad.json.result.json")["result"]["status"] == "invalid"
    assert list((root / "pending").iterdir()) == []
