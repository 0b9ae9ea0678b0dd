"""Reading an ASGI request body up to a cap and handing it on: the one implementation the
REST body cap (``api/limits.py``) and the MCP header guard (``mcp_server/guard.py``) share."""

from __future__ import annotations

from starlette.types import Message, Receive


async def read_body(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The request body, or its first ``limit``-odd bytes and ``True`` when more follows
    unread. A body that ends past ``limit`` in its last chunk comes back whole (``False``:
    the caller compares its length); a client gone mid-body ends it where it went."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False
        if size > limit:
            return b"".join(chunks), True


def replay(body: bytes, more: bool, receive: Receive) -> Receive:
    """``receive`` that answers ``body`` first (``more``: the rest still follows from
    ``receive``), then hands on to ``receive`` (the rest, or the disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replayed
