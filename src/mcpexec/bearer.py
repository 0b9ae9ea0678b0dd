"""The one parser of ``Authorization: Bearer TOKEN`` headers, shared by the REST API and the
MCP endpoint (neither adapter imports the other)."""

from __future__ import annotations


def bearer_token(header: str | None) -> str | None:
    """The token of a bearer ``Authorization`` header, or None. The scheme is
    case-insensitive and any run of spaces or tabs may separate it from the token (RFC 9110
    allows 1*SP; clients and shells often add more)."""
    if not header:
        return None
    parts = header.strip().split(None, 1)
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return None
    return parts[1].strip() or None
