"""The gateway plug-in: tools of downstream MCP servers and the built-in ``fs`` server.

Like ``store/`` and ``executor/`` it imports only :mod:`mcpexec.models`, :mod:`mcpexec.errors`
and :mod:`mcpexec.settings`. :class:`Gateway` holds one long-lived MCP session per configured
server (restarted on a crash, its process group killed on close) and the ``fs`` tools over a
:class:`ConfinedRoot`, in one catalog; see docs/gateway.md for the API the App calls.
"""

from __future__ import annotations

from mcpexec.gateway.catalog import Catalog, CatalogTool, Collision, validate_arguments
from mcpexec.gateway.config import (
    ConfigDiff,
    ConfigProblem,
    GatewayConfig,
    ServerConfig,
    ServerLimits,
    diff_configs,
    load_config,
    parse_config,
)
from mcpexec.gateway.confined import ConfinedRoot, FsLimits, openat2_available
from mcpexec.gateway.fs_tools import FS_TOOLS, FsTool, call_fs_tool, call_fs_tool_async
from mcpexec.gateway.gateway import FS_SERVER, Gateway, ToolFailed
from mcpexec.gateway.results import ToolResult
from mcpexec.gateway.sandbox import Confined, Confinement
from mcpexec.gateway.servers import ServerHealth
from mcpexec.gateway.session import ProgressCallback, SpawnWrapper

__all__ = [
    "FS_SERVER",
    "FS_TOOLS",
    "Catalog",
    "CatalogTool",
    "Collision",
    "ConfigDiff",
    "ConfigProblem",
    "Confined",
    "ConfinedRoot",
    "Confinement",
    "FsLimits",
    "FsTool",
    "Gateway",
    "GatewayConfig",
    "ProgressCallback",
    "ServerConfig",
    "ServerHealth",
    "ServerLimits",
    "SpawnWrapper",
    "ToolFailed",
    "ToolResult",
    "call_fs_tool",
    "call_fs_tool_async",
    "diff_configs",
    "load_config",
    "openat2_available",
    "parse_config",
    "validate_arguments",
]
