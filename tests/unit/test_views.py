"""``wire_safe``: lone surrogates (stored before input was checked) become U+FFFD wherever
they are; a value without one comes back as it is, not copied."""

from __future__ import annotations

from datetime import UTC, datetime

from mcpexec.views import wire_safe

BAD = "a\ud800b"


def test_surrogates_are_replaced_in_keys_values_and_lists() -> None:
    value = {"labels": {BAD: [BAD, "ok", 1, None]}, "n": 2.5, "t": True}
    assert wire_safe(value) == {
        "labels": {"a\ufffdb": ["a\ufffdb", "ok", 1, None]},
        "n": 2.5,
        "t": True,
    }
    assert wire_safe(BAD) == "a\ufffdb"
    assert wire_safe([[{"k": BAD}]]) == [[{"k": "a\ufffdb"}]]


def test_a_clean_value_is_returned_as_it_is() -> None:
    value = {"name": "é ü 日本", "items": [1, 2, {"x": "\U0001f600"}]}
    assert wire_safe(value) is value
    assert wire_safe("plain") == "plain"


def test_values_json_does_not_know_are_left_alone() -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    assert wire_safe({"at": when, (1, 2): "tuple key"}) == {"at": when, (1, 2): "tuple key"}
    assert wire_safe({"at": when, "x": BAD})["x"] == "a\ufffdb"
