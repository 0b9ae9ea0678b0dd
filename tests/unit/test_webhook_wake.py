"""The delivery loop is woken by run changes only when webhooks can exist (a secret is set):
without one, a finished run costs no store read (the loop's poll alone remains)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcpexec.events import EventHub
from mcpexec.settings import Settings
from mcpexec.store.memory import MemoryStore
from mcpexec.webhooks import Webhooks


@pytest.mark.parametrize(("secret", "woken"), [(None, False), ("s3cret-value", True)])
def test_a_run_change_wakes_the_loop_only_with_a_secret(
    tmp_path: Path, secret: str | None, woken: bool
) -> None:
    events = EventHub()
    hooks = Webhooks(Settings(home=tmp_path, webhook_secret=secret), MemoryStore(), events)
    events.run_changed("run-1")
    assert hooks._wake.is_set() is woken
