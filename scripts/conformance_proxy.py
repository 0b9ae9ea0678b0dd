"""A loopback proxy that adds ``Authorization: Bearer $MCPEXEC_TOKEN`` to every request: the
conformance CLI cannot send headers, and ``/mcp`` refuses requests without a token.

Usage: conformance_proxy.py LISTEN_PORT UPSTREAM_URL (streams responses, SSE included).
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator

import httpx
import uvicorn
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

HOP = {"host", "content-length", "connection", "transfer-encoding", "keep-alive"}


def make_app(upstream: str, token: str) -> object:
    client = httpx.AsyncClient(base_url=upstream, timeout=httpx.Timeout(30, read=None))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        headers["authorization"] = f"Bearer {token}"
        outgoing = client.build_request(
            request.method,
            request.url.path + (f"?{request.url.query}" if request.url.query else ""),
            headers=headers,
            content=await request.body(),
        )
        answer = await client.send(outgoing, stream=True)

        async def body() -> AsyncIterator[bytes]:
            async for chunk in answer.aiter_raw():
                yield chunk

        passed = {k: v for k, v in answer.headers.items() if k.lower() not in HOP}
        response = StreamingResponse(
            body(), answer.status_code, passed, background=BackgroundTask(answer.aclose)
        )
        await response(scope, receive, send)

    return app


def main() -> None:
    port, upstream = int(sys.argv[1]), sys.argv[2]
    app = make_app(upstream, os.environ["MCPEXEC_TOKEN"])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
