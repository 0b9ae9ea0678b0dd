"""What a new user hits in the first ten minutes: failures said on stderr, start-up errors in one
line, the CLI finding the server, and the small CLI items."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import MCPEXEC, Server, free_port, make_server


@pytest.fixture(scope="module")
def cli_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = make_server(tmp_path_factory.mktemp("cli"), workers=2)
    srv.start()
    yield srv
    srv.stop()


def test_spawn_failures_and_timeouts_are_said_on_stderr(cli_server: Server) -> None:
    missing = cli_server.cli("run", "--", "nosuchcmd")
    assert missing.returncode == 1
    assert "spawn_error" in missing.stderr
    assert "command not found: nosuchcmd" in missing.stderr
    absent = cli_server.cli("run", "--", "/nonexistent/binary")
    assert absent.returncode == 1
    assert "not found" in absent.stderr
    assert "Permission denied" not in absent.stderr
    slow = cli_server.cli("run", "--timeout", "1", "--", "sleep", "5")
    assert slow.returncode == 124
    assert "timeout" in slow.stderr
    # A task's own exit code speaks for itself: nothing added to its stderr.
    failed = cli_server.cli("run", "--", "sh", "-c", "echo oops >&2; exit 3")
    assert (failed.returncode, failed.stderr) == (3, "oops\n")


def test_show_quotes_the_command_and_artifacts_have_a_header(cli_server: Server) -> None:
    submitted = cli_server.cli("run", "--detach", "--", "sh", "-c", "exit 2")
    run_id = submitted.stdout.strip()
    with cli_server.client() as client:
        client.wait(run_id, 30)
    shown = cli_server.cli("show", run_id)
    assert "sh -c 'exit 2'" in shown.stdout
    made = cli_server.cli("run", "--", "sh", "-c", 'echo x > "$MCPEXEC_OUTPUT_DIR/a.txt"')
    assert made.returncode == 0, made.stderr
    with cli_server.client() as client:
        newest = client.list_runs(limit=1)["runs"][0]["id"]
    listed = cli_server.cli("artifacts", newest)
    header, row = listed.stdout.splitlines()
    assert header.split() == ["SIZE", "SHA256", "NAME"]
    assert row.split()[-1] == "a.txt"


def test_shell_and_command_together_is_one_clear_line(cli_server: Server) -> None:
    both = cli_server.cli("run", "--shell", "echo a", "--", "echo", "b")
    assert both.returncode == 2
    assert "--shell" in both.stderr
    assert "alternatives" in both.stderr


def test_runs_created_filters_and_backoff(cli_server: Server) -> None:
    made = cli_server.cli(
        "submit", "--retries", "1", "--backoff", "fixed", "--retry-delay", "0", "--", "true"
    )
    assert made.returncode == 0, made.stderr
    with cli_server.client() as client:
        run = client.get(made.stdout.strip())
    assert run["retry"]["backoff"] == "fixed"
    later = cli_server.cli("runs", "--created-after", "2999-01-01T00:00:00Z")
    assert later.stdout.strip() == "no runs"
    earlier = cli_server.cli("runs", "--created-before", "2999-01-01T00:00:00Z", "--json")
    assert run["id"] in earlier.stdout
    bad = cli_server.cli("runs", "--created-after", "0001-01-01T00:00:00+01:00")
    assert bad.returncode == 1
    assert "created_after" in bad.stderr


def test_missing_token_says_where_it_looked(cli_server: Server, tmp_path: Path) -> None:
    env = {"MCPEXEC_TOKEN": "", "MCPEXEC_HOME": str(tmp_path)}
    result = cli_server.cli("runs", env=env)
    assert result.returncode == 1
    assert str(tmp_path / "token") in result.stderr
    assert "Traceback" not in result.stderr


def _serve(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MCPEXEC, "serve", "--port", str(free_port()), *args],
        env={"PATH": os.environ["PATH"], "HOME": str(home), "MCPEXEC_HOME": str(home), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_start_up_errors_are_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    config = home / "config.toml"
    config.write_text('workers = "lots"\n')
    line = _one_line(_serve(home))
    assert "workers" in line
    assert str(config) in line
    assert "'lots'" in line
    config.write_text('{"workers": 2}\n')  # JSON, not TOML
    line = _one_line(_serve(home))
    assert str(config) in line
    assert "not valid TOML" in line
    config.write_text("workers = 2\n")
    config.chmod(0o666)
    line = _one_line(_serve(home))
    assert "writable by every user" in line
    assert f"chmod o-w {config}" in line
    config.unlink()
    secrets = tmp_path / "secrets"
    secrets.write_text("API_TOKEN=abcdefghijklmnop\n")
    secrets.chmod(0o644)
    line = _one_line(_serve(home, MCPEXEC_SECRETS_FILE=str(secrets)))
    assert str(secrets) in line
    assert "chmod 600" in line


def test_port_in_use_is_not_ready(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [MCPEXEC, "serve", "--port", str(port), "--workers", "0"],
            env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "MCPEXEC_HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode != 0
    assert "address already in use" in result.stderr
    assert "mcpexec ready" not in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "url").exists()


def test_a_config_file_with_an_unknown_key_stops_serve_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("wrokers: 2\n")
    line = _one_line(_serve(tmp_path))
    assert "config.yaml: unknown key 'wrokers'; did you mean 'workers'?" in line
