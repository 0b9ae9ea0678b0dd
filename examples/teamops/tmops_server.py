"""Seed 004's TeamOps MCP server, on mcpexec workflows: three MCP tools over stdio.

- ``tmops_init_feature(feature)``: starts a run of the ``teamops`` workflow for the feature; its
  ``init`` step runs ``tools/init_feature_multi.sh`` in the feature's own workspace, then the
  run waits at the ``start`` gate.
- ``tmops_start_orchestration(feature)``: approves the gate: orchestrator → tester →
  implementer → verifier follow, each phase a ``claude -p`` session resumed from the last,
  moving on when its checkpoint validates.
- ``tmops_get_status(feature?)``: each feature's workflow run, phases, checkpoints.

Everything else — the manual fallback (pause, resume, skip, retry, rollback, mark-done),
events, several features at once, crash recovery — is mcpexec's: ``mcpexec workflows …``.

It talks to a running ``mcpexec serve`` through its REST API (``MCPEXEC_URL``,
``MCPEXEC_TOKEN``, or what ``serve`` wrote under ``$MCPEXEC_HOME``). ``TMOPS_AGENT`` names the
agent CLI (default ``claude``); ``TMOPS_REPO`` a git repository to give each feature a clone
on its own branch (default: a plain directory per feature).

    python examples/teamops/tmops_server.py        # an MCP server on stdio
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from mcpexec.client import ApiError, Client
from mcpexec.client_workflows import WorkflowsApi

HERE = Path(__file__).resolve().parent
ACTIVE = ("queued", "running", "waiting")
INIT_TIMEOUT_S = 120.0
#: Still queued after this: more features than ``concurrency``; answer ``queued``.
QUEUED_S = 3.0


def definition() -> str:
    """teamops.yaml with this installation's paths, as JSON (the workspace per TMOPS_REPO)."""
    import yaml

    text = (HERE / "teamops.yaml").read_text()
    text = text.replace("@TOOLS@", str(HERE / "tools"))
    text = text.replace("@AGENT@", os.environ.get("TMOPS_AGENT", "claude"))
    data = yaml.safe_load(text)
    repo = os.environ.get("TMOPS_REPO")
    if repo:
        data["workspace"] = {"git": True, "repo": repo}
    return json.dumps(data)


class TeamOps:
    def __init__(self) -> None:
        self.client = Client.from_env()
        self.api = WorkflowsApi(self.client)
        self.defined = False

    def _define(self) -> None:
        if not self.defined:
            self.api.define(definition(), "json")
            self.defined = True

    def _runs(self, feature: str | None = None) -> list[dict[str, Any]]:
        runs = self.api.runs(workflow="teamops")
        return [r for r in runs if feature is None or r["params"].get("feature") == feature]

    def _active(self, feature: str) -> dict[str, Any] | None:
        return next((r for r in self._runs(feature) if r["status"] in ACTIVE), None)

    def init_feature(self, feature: str) -> dict[str, Any]:
        self._define()
        if self._active(feature) is not None:
            raise ValueError(f"feature {feature!r} is already initialized and active")
        run = self.api.start("teamops", {"feature": feature})
        started = time.monotonic()
        while True:  # the init script is short: answer with its outcome
            run = self.api.run(run["id"])
            init = run["steps"]["init"]["status"]
            if init in ("completed", "failed") or run["status"] not in ACTIVE:
                break
            waited = time.monotonic() - started
            if (run["status"] == "queued" and waited > QUEUED_S) or waited > INIT_TIMEOUT_S:
                break  # over the concurrency limit: it starts when a feature finishes
            time.sleep(0.1)
        return summary(run)

    def start_orchestration(self, feature: str) -> dict[str, Any]:
        run = self._active(feature)
        if run is None:
            raise ValueError(f"feature {feature!r} is not initialized (tmops_init_feature)")
        return summary(self.api.act(run["id"], "approve", "start"))

    def status(self, feature: str | None) -> dict[str, Any]:
        return {"features": [summary(r) for r in self._runs(feature)]}


def summary(run: dict[str, Any]) -> dict[str, Any]:
    phases = ("init", "start", "orchestrator", "tester", "implementer", "verifier")
    return {
        "feature": run["params"].get("feature"),
        "workflow_run": run["id"],
        "status": run["status"],
        "workspace": run["workspace"],
        "branch": run["branch"],
        "error": run["error"],
        "phases": {
            name: {
                "status": run["steps"][name]["status"],
                "checkpoint": run["steps"][name]["checkpoint"],
            }
            for name in phases
        },
    }


def build() -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer("tmops")
    teamops = TeamOps()

    async def call(fn: Any, *args: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = await anyio.to_thread.run_sync(fn, *args)
        except (ApiError, ValueError) as exc:
            raise ToolError(str(exc)) from None
        return result

    @server.tool(description="Initialize a feature: its workspace, branch and TeamOps files.")
    async def tmops_init_feature(feature: str) -> dict[str, Any]:
        return await call(teamops.init_feature, feature)

    @server.tool(description="Start the automated orchestration of an initialized feature.")
    async def tmops_start_orchestration(feature: str) -> dict[str, Any]:
        return await call(teamops.start_orchestration, feature)

    @server.tool(description="The status of one feature's workflow (or of all features).")
    async def tmops_get_status(feature: str | None = None) -> dict[str, Any]:
        return await call(teamops.status, feature)

    return server


if __name__ == "__main__":
    build().run()
