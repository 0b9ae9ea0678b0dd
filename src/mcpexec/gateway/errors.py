"""Error codes of the filesystem sandbox (``fs`` server), all :class:`McpexecError` subclasses.

Refusals (the path is not one the sandbox will touch) share the seed's wording,
``Path validation failed: Path '<path as the caller gave it>' <reason>``; the outside case is
exactly the seed's ``… is outside sandbox directory``. Messages name the path only as the caller
wrote it (never the server's absolute root) and never carry an ``OSError``'s own text with a
filename in it.
"""

from __future__ import annotations

from typing import Any

from mcpexec.errors import McpexecError

_SHOW_MAX = 200


def show_path(path: str) -> str:
    """The caller's path made safe for one line of a message: escaped controls, bounded length."""
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in path)
    if len(shown) > _SHOW_MAX:
        shown = f"{shown[:_SHOW_MAX]}… ({len(path)} characters)"
    return shown


class FsError(McpexecError):
    """The filesystem operation failed."""

    code = "fs_error"
    http_status = 500

    def __init__(self, path: str, reason: str | None = None, **details: Any) -> None:
        shown = show_path(path)
        message = self._format(shown, reason) if reason else None
        super().__init__(message, path=shown, **details)

    @staticmethod
    def _format(shown: str, reason: str) -> str:
        return f"Path '{shown}': {reason}"


class PathRefused(FsError):
    """Path validation failed: the sandbox refuses this path."""

    code = "path_validation_failed"
    http_status = 403

    @staticmethod
    def _format(shown: str, reason: str) -> str:
        return f"Path validation failed: Path '{shown}' {reason}"


class PathOutsideSandbox(PathRefused):
    """Path validation failed: the path is outside sandbox directory."""

    code = "path_outside_sandbox"

    def __init__(self, path: str, reason: str = "is outside sandbox directory", **details: Any):
        super().__init__(path, reason, **details)


class InvalidPath(PathRefused):
    """Path validation failed: the path is not valid (NUL byte, too long, not encodable)."""

    code = "invalid_path"
    http_status = 422


class NotARegularFile(PathRefused):
    """Path validation failed: not a regular file (FIFOs, devices, sockets are never opened)."""

    code = "not_a_regular_file"
    http_status = 422


class HardLinkRefused(PathRefused):
    """Path validation failed: the file has other hard links; writing could change them too."""

    code = "hard_link_refused"


class PathNotFound(FsError):
    """No such file or directory in the sandbox."""

    code = "path_not_found"
    http_status = 404


class NotADirectory(FsError):
    """A component of the path is not a directory."""

    code = "not_a_directory"
    http_status = 422


class PathExists(FsError):
    """Something already exists at this path."""

    code = "path_exists"
    http_status = 409


class FileTooLarge(FsError):
    """The file or content is larger than the sandbox's size cap."""

    code = "file_too_large"
    http_status = 413


class FsPermissionDenied(FsError):
    """The server's own permissions do not allow this operation."""

    code = "permission_denied"
    http_status = 403


class UnknownTool(McpexecError):
    """No tool of this name on this server."""

    code = "unknown_tool"
    http_status = 404


class InvalidArguments(McpexecError):
    """The tool's arguments do not match its input schema."""

    code = "invalid_arguments"
    http_status = 422


# -- the gateway to downstream MCP servers ----------------------------------------------------


class GatewayConfigError(McpexecError):
    """The MCP server configuration is not valid."""

    code = "gateway_config_invalid"
    http_status = 422


class ToolError(McpexecError):
    """The tool ran and reported an error (isError)."""

    code = "tool_error"
    http_status = 502


class ToolTimeout(McpexecError):
    """The tool call did not finish within its timeout."""

    code = "timeout"
    http_status = 504


class DownstreamUnavailable(McpexecError):
    """The MCP server is not available (not started, disabled, or failing to start)."""

    code = "server_unavailable"
    http_status = 503


class ServerLost(McpexecError):
    """The MCP server died or closed its connection while the call was in flight."""

    code = "server_lost"
    http_status = 502


class PoolExhausted(McpexecError):
    """Too many tool calls in flight; no slot became free in time."""

    code = "pool_exhausted"
    http_status = 503
