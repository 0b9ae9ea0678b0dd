"""Errors with stable codes. Every adapter maps them the same way (REST status, MCP tool error).

The docstring of each class is its default message; ``code`` is part of the public API.
"""

from __future__ import annotations

from typing import Any, ClassVar


class McpexecError(Exception):
    """Something went wrong in mcpexec."""

    code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or (self.__doc__ or self.code).strip()
        self.details = details
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class InvalidRequest(McpexecError):
    """The request is not valid."""

    code = "invalid_request"
    http_status = 422


class NotFound(McpexecError):
    """No such object (or it belongs to another tenant)."""

    code = "not_found"
    http_status = 404


class RunNotFound(NotFound):
    """No run with this id."""

    code = "run_not_found"


class ArtifactNotFound(NotFound):
    """The run has no artifact of this name."""

    code = "artifact_not_found"


class Conflict(McpexecError):
    """The object is not in a state that allows this."""

    code = "conflict"
    http_status = 409


class RunNotTerminal(Conflict):
    """The run has not finished yet."""

    code = "run_not_terminal"


class Unauthorized(McpexecError):
    """A valid bearer token is required (header 'Authorization: Bearer TOKEN')."""

    code = "unauthorized"
    http_status = 401


class Forbidden(McpexecError):
    """This token's role does not allow that."""

    code = "forbidden"
    http_status = 403


class PayloadTooLarge(McpexecError):
    """The request body is too large."""

    code = "payload_too_large"
    http_status = 413


class ServerUnavailable(McpexecError):
    """No mcpexec server answers at this address."""

    code = "server_unavailable"
    http_status = 503


class StoreError(McpexecError):
    """The store failed; the operation did not happen."""

    code = "store_error"
    http_status = 503
