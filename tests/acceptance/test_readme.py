"""Every ``console`` example of README.md, run as written against a live ``serve`` in a temporary
home (the default ``~/.local/share/mcpexec`` under a temporary ``$HOME``). The CLI finds the
server through the URL ``serve`` records and the token it writes: no ``MCPEXEC_URL`` and no
``MCPEXEC_TOKEN`` are set. Substituted: ``RUN_ID`` (a finished run with a ``report.txt``
artifact), the sample run id (the id the previous example printed) and port 8002 (the test's
own free port)."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .conftest import MCPEXEC, Server, free_port

README = Path(__file__).parents[2] / "README.md"
SAMPLE_ID = re.compile(r"\b[0-9a-f]{32}\b")


@dataclass
class Example:
    command: str
    expected: list[str]


def examples(text: str) -> list[Example]:
    """The ``$ command`` lines (with ``\\`` continuations) of every console block and the
    output lines that follow each."""
    found: list[Example] = []
    for block in re.findall(r"```console\n(.*?)```", text, flags=re.DOTALL):
        lines = block.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            i += 1
            if not line.startswith("$ "):
                found[-1].expected.append(line)
                continue
            command = line[2:]
            while command.rstrip().endswith("\\") and i < len(lines):
                command = command.rstrip()[:-1] + " " + lines[i].strip()
                i += 1
            found.append(Example(command, []))
    return found


def test_readme_has_examples() -> None:
    found = examples(README.read_text())
    assert len(found) >= 8
    assert any("curl" in e.command for e in found)


def test_every_readme_console_example_runs(tmp_path: Path) -> None:
    home = tmp_path / ".local" / "share" / "mcpexec"
    home.mkdir(parents=True)
    port = free_port()
    server = Server(home=home, port=port, workers=2)
    env = {
        "PATH": f"{Path(MCPEXEC).parent}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "MCPEXEC_RUN_PATH": "/usr/bin:/bin",
        "MCPEXEC_KILL_GRACE_S": "0.5",
    }
    server.extra_env = {**env, "MCPEXEC_URL": ""}
    server.start()
    try:
        assert (home / "url").read_text().strip() == f"http://127.0.0.1:{port}"
        assert (home / "url").stat().st_mode & 0o777 == 0o600
        with server.client() as client:
            made = client.submit({"shell": 'echo report > "$MCPEXEC_OUTPUT_DIR/report.txt"'})
            assert client.wait(made["id"], 60)["status"] == "completed"
        run_id = made["id"]
        last_id = run_id
        for example in examples(README.read_text()):
            command = SAMPLE_ID.sub(last_id, example.command)
            command = command.replace("RUN_ID", run_id).replace("8002", str(port))
            result = subprocess.run(
                ["bash", "-c", command],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            what = f"README example {example.command!r}:\n{result.stdout}\n{result.stderr}"
            expected = [e for e in example.expected if e.strip()]
            if any("…" in e for e in expected):  # abridged output (doctor): it answered
                assert result.returncode in (0, 1), what
                assert result.stdout.strip(), what
                continue
            assert result.returncode == 0, what
            if expected == [SAMPLE_ID.pattern] or (
                len(expected) == 1 and SAMPLE_ID.fullmatch(expected[0])
            ):
                assert SAMPLE_ID.fullmatch(result.stdout.strip()), what
                last_id = result.stdout.strip()
            elif expected:
                assert result.stdout.splitlines() == expected, what
            if "curl" in command:
                assert '"id"' in result.stdout, what
        assert (tmp_path / "report.txt").read_text() == "report\n"
    finally:
        server.stop()
    # Removed on a clean exit, so a stale URL never points the CLI at nothing.
    assert not (home / "url").exists()
