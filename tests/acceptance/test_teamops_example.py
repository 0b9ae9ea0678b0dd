"""examples/teamops against a live ``serve``: seed 004's Gherkin scenarios through its three MCP
tools (``tmops_init_feature``, ``tmops_start_orchestration``, ``tmops_get_status``) over stdio,
with the fake agent CLI standing in for ``claude`` (no model is called)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp import types as mt

from workflow_helpers import FAKE_CLAUDE, MALICIOUS

from .conftest import Server, make_server

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "teamops"


@pytest.fixture
def srv(tmp_path: Path) -> Any:
    server = make_server(tmp_path, workers=4, MCPEXEC_SANDBOX="none")
    server.start()
    yield server
    server.stop()


def tmops(server: Server) -> StdioServerParameters:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(server.home),
        "MCPEXEC_URL": server.url,
        "MCPEXEC_TOKEN": server.token,
        "TMOPS_AGENT": FAKE_CLAUDE,
    }
    return StdioServerParameters(
        command=sys.executable, args=[str(EXAMPLE / "tmops_server.py")], env=env
    )


def ok(result: mt.CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


def text(result: mt.CallToolResult) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


async def status_of(mcp: Client, feature: str, status: str) -> dict[str, Any]:
    with anyio.fail_after(90):
        while True:
            found = ok(await mcp.call_tool("tmops_get_status", {"feature": feature}))
            if found["features"] and found["features"][0]["status"] == status:
                return dict(found["features"][0])
            await anyio.sleep(0.1)


async def test_init_then_orchestrate_two_features_through_all_phases(srv: Server) -> None:
    async with Client(tmops(srv), read_timeout_seconds=120) as mcp:
        # Scenario: initialize a feature via MCP
        first = ok(await mcp.call_tool("tmops_init_feature", {"feature": "test-auth"}))
        assert first["phases"]["init"]["status"] == "completed"
        assert first["status"] == "waiting"  # at the start gate
        workspace = Path(first["workspace"])
        assert (workspace / "TASK_SPEC.md").read_text().startswith("# Task spec: test-auth")
        assert (workspace / ".tmops/instructions/tester.md").exists()
        again = await mcp.call_tool("tmops_init_feature", {"feature": "test-auth"})
        assert again.is_error
        assert "already initialized" in text(again)
        # Scenario: two features at once, each with its own state
        second = ok(await mcp.call_tool("tmops_init_feature", {"feature": "billing"}))
        assert Path(second["workspace"]) != workspace
        # Scenario: automated orchestration through all four phases
        for feature in ("test-auth", "billing"):
            ok(await mcp.call_tool("tmops_start_orchestration", {"feature": feature}))
        done = [await status_of(mcp, f, "completed") for f in ("test-auth", "billing")]
        for found in done:
            for phase in ("orchestrator", "tester", "implementer", "verifier"):
                assert found["phases"][phase]["checkpoint"]["status"] == "complete"
        for found in done:
            calls = (Path(found["workspace"]) / ".fake-agent/calls.jsonl").read_text()
            steps = [json.loads(line)["step"] for line in calls.splitlines()]
            assert steps == ["orchestrator", "tester", "implementer", "verifier"]
        missing = await mcp.call_tool("tmops_start_orchestration", {"feature": "nothing"})
        assert "not initialized" in text(missing)


@pytest.mark.parametrize(
    "feature",
    MALICIOUS,
)
async def test_malicious_feature_names_are_refused_and_nothing_runs(
    srv: Server, feature: str
) -> None:
    async with Client(tmops(srv), read_timeout_seconds=60) as mcp:
        refused = await mcp.call_tool("tmops_init_feature", {"feature": feature})
        assert refused.is_error
        assert "feature" in text(refused)
        status = ok(await mcp.call_tool("tmops_get_status", {}))
        assert status["features"] == []
    with srv.client() as client:
        assert client.list_runs()["runs"] == []
