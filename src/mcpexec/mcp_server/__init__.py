"""The MCP adapter: tools, resources and the tasks extension over an ``App``."""

from mcpexec.mcp_server.server import build_mcp_server

__all__ = ["build_mcp_server"]
