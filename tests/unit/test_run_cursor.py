"""The runs list's cursor token: what the stores issue and what a caller may pass back."""

from __future__ import annotations

import pytest

from mcpexec.store.base import RunCursor


def test_tokens_round_trip() -> None:
    for cursor in (RunCursor(7), RunCursor(7, 1_767_225_600_123_456), RunCursor(0, 0)):
        assert RunCursor.parse(cursor.token()) == cursor
    assert RunCursor(7).token() == "7"
    assert RunCursor(7, 12).token() == "12.7"


def test_numbers_past_64_bits_mean_below_everything() -> None:
    assert RunCursor.parse("9999999999999999999") == RunCursor(2**63 - 1)


@pytest.mark.parametrize("token", ["", "-1", "1.2.3", "x", "1.", ".1", "١٢", "1" * 20, " 1"])
def test_anything_else_is_refused(token: str) -> None:
    with pytest.raises(ValueError, match="not a cursor"):
        RunCursor.parse(token)
