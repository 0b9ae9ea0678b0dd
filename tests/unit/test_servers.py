"""The real-server pattern: skip locally, fail under CI=true."""

from __future__ import annotations

import pytest

from servers import executable, missing, server_url


def test_a_missing_server_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("TEST_NOTHING_URL", raising=False)
    with pytest.raises(pytest.skip.Exception, match="TEST_NOTHING_URL is not set"):
        server_url("TEST_NOTHING_URL", "Nothing")


@pytest.mark.parametrize("ci", ["true", "1", "TRUE"])
def test_a_missing_server_fails_under_ci(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    monkeypatch.delenv("TEST_NOTHING_URL", raising=False)
    with pytest.raises(pytest.fail.Exception, match="required under CI=true"):
        server_url("TEST_NOTHING_URL", "Nothing")
    with pytest.raises(pytest.fail.Exception, match="required under CI=true"):
        executable("surely-not-a-program-mcpexec")
    with pytest.raises(pytest.fail.Exception):
        missing("chromium", "it is not installed")


def test_a_present_server_is_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("TEST_SOMETHING_URL", "postgresql://localhost/x")
    assert server_url("TEST_SOMETHING_URL", "Something") == "postgresql://localhost/x"
    assert executable("sh").endswith("/sh")
