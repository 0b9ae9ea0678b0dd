"""Fixtures of the gateway's tests (helpers in helpers.py)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from .helpers import FIXTURE, free_port


@pytest.fixture
def http_fixture() -> Iterator[str]:
    """The fixture server over Streamable HTTP; its URL (ready when returned)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, FIXTURE, "http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # uvicorn says when it listens; bounded by the test timeout
            if b"Uvicorn running" in line or b"Application startup complete" in line:
                break
        else:
            pytest.fail("the HTTP fixture server did not start")
        # Keep draining its log, or a full pipe would stall the server.
        drain = threading.Thread(target=proc.stderr.read, daemon=True)
        drain.start()
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()
