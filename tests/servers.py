"""Real servers a test needs (PostgreSQL, a downstream MCP server, chromium, …): skip when one
is missing on a developer's machine, FAIL when it is missing under ``CI=true`` (CI provides it;
a silent skip there would hide that the test never ran).

Where a server is found is given by a ``TEST_*`` variable (not ``MCPEXEC_*``: those are scrubbed
from the test environment, see ``tests/conftest.py``)::

    url = server_url("TEST_POSTGRES_URL", "PostgreSQL")        # in a fixture
    chromium = executable("chromium", "TEST_CHROMIUM")
"""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing(what: str, why: str) -> None:
    """Skip the test (locally) or fail it (under ``CI=true``): ``what`` is not available."""
    if in_ci():
        pytest.fail(f"{what} is required under CI=true but {why}", pytrace=False)
    pytest.skip(f"{what} not available: {why}")


def server_url(variable: str, what: str) -> str:
    """The URL of a real server, from ``variable``; skips/fails (``missing``) without it."""
    url = os.environ.get(variable, "").strip()
    if not url:
        missing(what, f"{variable} is not set")
    return url


def executable(name: str, variable: str | None = None) -> str:
    """The path of a program (``variable`` may name it explicitly); skips/fails without it."""
    explicit = os.environ.get(variable, "").strip() if variable else ""
    found = shutil.which(explicit or name)
    if found is None:
        missing(name, f"{explicit or name!r} is not on PATH")
    assert found is not None
    return found
