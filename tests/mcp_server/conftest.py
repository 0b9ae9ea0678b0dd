"""Fixtures for the MCP tests: a real App (SQLite store, subprocess executor, workers) in a
temporary home, and the MCP server over it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mcpexec.app import App
from mcpexec.bootstrap import build_app
from mcpexec.mcp_server.server import McpexecServer, build_mcp_server
from mcpexec.settings import Settings


def settings_for(home: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "home": home,
        "poll_s": 0.2,
        "heartbeat_s": 0.5,
        "reaper_s": 0.5,
        "kill_grace_s": 0.5,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    app = build_app(settings_for(tmp_path / "home"))
    await app.open()
    await app.start_background(workers=2)
    yield app
    await asyncio.wait_for(app.close(), 20)


@pytest.fixture
async def server(app: App) -> AsyncIterator[McpexecServer]:
    srv = build_mcp_server(app, local=True, progress_interval_s=0.2)
    yield srv
    await srv.watcher.close()
