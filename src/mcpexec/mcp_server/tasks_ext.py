"""Placeholder; see below."""

from __future__ import annotations

from mcp.server.extension import Extension

from mcpexec.mcp_server.common import Deps

TASKS = "io.modelcontextprotocol/tasks"


class TasksExtension(Extension):
    identifier = TASKS

    def __init__(self, deps: Deps) -> None:
        self._deps = deps
