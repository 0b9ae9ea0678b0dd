"""The suite's own rules: tests never see the developer's ``MCPEXEC_*`` environment."""

from __future__ import annotations

import os

import pytest

from environment import scrub_settings_environment
from mcpexec.settings import Settings


def test_no_mcpexec_variable_reaches_the_tests() -> None:
    assert [name for name in os.environ if name.startswith("MCPEXEC_")] == []


def test_settings_built_in_a_test_are_the_defaults() -> None:
    settings = Settings()
    assert settings.sandbox == "default"
    assert settings.workers == 4


def test_a_test_can_still_set_a_variable_on_purpose(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCPEXEC_SANDBOX", "none")
    assert Settings().sandbox == "none"


def test_scrub_removes_every_settings_variable_and_nothing_else() -> None:
    environ = {
        "MCPEXEC_SANDBOX": "none",
        "MCPEXEC_CONFIG": "/x.toml",
        "PATH": "/bin",
        "mcpexec_home": "/h",
    }
    assert scrub_settings_environment(environ) == [
        "MCPEXEC_CONFIG",
        "MCPEXEC_SANDBOX",
        "mcpexec_home",
    ]
    assert environ == {"PATH": "/bin"}
