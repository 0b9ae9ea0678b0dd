"""Token hygiene and the other surfaces of tenancy, over a real ``serve``:

- a token is shown once, stored only as its hash, and never appears in logs, error messages,
  listings, URLs or any process's command line;
- ``mcpexec mcp --tenant T`` (stdio) acts as T's operator: T's runs only, another tenant's run
  is not found, a submit lands in T;
- labels starting ``mcp/`` are refused from callers; single-token installs keep working.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client, StdioServerParameters

from .conftest import MCPEXEC, Server, make_server


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[Server]:
    server = make_server(tmp_path, workers=2)
    server.start()
    yield server
    server.stop()


def _cmdlines() -> list[bytes]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append((entry / "cmdline").read_bytes())
            except OSError:
                continue
    return found


def test_a_token_is_shown_once_stored_hashed_and_never_leaks(srv: Server) -> None:
    assert srv.cli("tenants", "create", "acme").returncode == 0
    made = srv.cli("tokens", "create", "--tenant", "acme", "--role", "submitter", "--name", "ci")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("mcpx_")
    assert secret not in made.stderr  # the note on stderr names the id, not the secret
    env = {"MCPEXEC_TOKEN": secret}
    submitted = srv.cli("submit", "--", "echo", "hi", env=env)
    assert submitted.returncode == 0, submitted.stderr
    run_id = submitted.stdout.strip()
    answers: list[str] = []
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {secret}"}) as h:
        answers.append(h.get(f"/api/v1/runs/{run_id}", params={"wait": 30}).text)
        answers.append(h.get("/api/v1/tokens").text)  # 403: a submitter manages no tokens
        answers.append(h.delete(f"/api/v1/runs/{'0' * 32}").text)  # 404
    wrong = httpx.get(f"{srv.url}/api/v1/runs", headers={"Authorization": f"Bearer {secret}x"})
    assert wrong.status_code == 401
    answers.append(wrong.text)
    listed = srv.cli("tokens", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    answers.append(listed.stdout)
    rows: list[dict[str, Any]] = json.loads(listed.stdout)
    assert all(set(r) & {"token", "token_hash"} == set() for r in rows)
    for text in answers:
        assert secret not in text
    assert json.loads(answers[0])["status"] == "completed"
    # never in a log or a command line of ours (ps)
    assert secret not in srv.log()
    assert all(secret.encode() not in cmdline for cmdline in _cmdlines())
    # stored as its SHA-256 only: the raw secret is in no byte of the database files
    for path in srv.home.glob("mcpexec.db*"):
        assert secret.encode() not in path.read_bytes(), path
    with sqlite3.connect(srv.home / "mcpexec.db") as conn:
        hashes = {r[0] for r in conn.execute("SELECT token_hash FROM tokens")}
    conn.close()
    assert hashlib.sha256(secret.encode()).hexdigest() in hashes
    # the admin token serve wrote keeps working (single-token installs)
    assert srv.cli("runs").returncode == 0


def test_reserved_labels_are_refused(srv: Server) -> None:
    with srv.client() as client:
        with pytest.raises(Exception) as refused:  # noqa: PT011 - checked below
            client.submit({"command": ["true"], "labels": {"mcp/task": "someone"}})
        assert getattr(refused.value, "status", None) == 422
        assert "mcp/" in str(refused.value)
        client.submit({"command": ["true"], "labels": {"team": "data"}})


def _stdio(home: Path, tenant: str) -> StdioServerParameters:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "MCPEXEC_HOME": str(home),
        "MCPEXEC_POLL_S": "0.2",
    }
    return StdioServerParameters(
        command=MCPEXEC, args=["mcp", "--no-worker", "--tenant", tenant], env=env
    )


@pytest.mark.anyio
async def test_stdio_mcp_acts_as_the_operator_of_its_tenant(srv: Server) -> None:
    with srv.client() as admin:
        admin.create_tenant("acme")
        default_run = admin.submit({"command": ["echo", "default"]})["id"]
        admin.wait(default_run, 30)
    async with Client(_stdio(srv.home, "acme"), read_timeout_seconds=60) as mcp:
        missing = await mcp.call_tool("get_run", {"run_id": default_run})
        assert missing.is_error
        assert "not_found" in " ".join(getattr(c, "text", "") for c in missing.content)
        listed = await mcp.call_tool("list_runs", {})
        assert not listed.is_error
        assert default_run not in json.dumps(listed.structured_content)
        made = await mcp.call_tool("submit_run", {"command": ["echo", "acme"]})
        assert not made.is_error
        assert isinstance(made.structured_content, dict)
        acme_run = made.structured_content["run_id"]
        cancel = await mcp.call_tool("cancel_run", {"run_id": default_run})
        assert cancel.is_error
        assert "not_found" in " ".join(getattr(c, "text", "") for c in cancel.content)
    with srv.client() as admin:
        run = admin.wait(acme_run, 30)
    assert run["tenant"] == "acme"
    assert run["status"] == "completed"
