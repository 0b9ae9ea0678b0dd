"""``SafeJSONResponse``: orjson's bytes where it can write the value exactly, the stdlib's (with
lone surrogates replaced) where it cannot; the same JSON either way."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mcpexec.api.errors import SafeJSONResponse

BAD = "a\ud800b"


def _stdlib(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def _rendered(value: Any) -> bytes:
    return bytes(SafeJSONResponse(value).body)


@pytest.mark.parametrize(
    "value",
    [
        {"id": "r-1", "status": "completed", "labels": {"k": "é ✓ 😀"}, "exit_code": 0},
        [1, 2.5, None, True, 'tab\tnewline\n\u2028 \x00 quote" back\\'],
        {"nested": [{"a": []}, {}], "big": 2**63 - 1, "neg": -(2**63)},
    ],
)
def test_the_answer_is_the_json_the_stdlib_writes(value: Any) -> None:
    rendered = _rendered(value)
    assert json.loads(rendered) == value
    assert rendered == _stdlib(value)


def test_what_orjson_refuses_takes_the_stdlib_path() -> None:
    # An integer beyond 64 bits: orjson refuses it, the stdlib writes it exactly.
    assert json.loads(_rendered({"n": 2**70})) == {"n": 2**70}
    # A lone surrogate (stored before input was checked) becomes U+FFFD, key or value.
    assert json.loads(_rendered({BAD: [BAD]})) == {"a\ufffdb": ["a\ufffdb"]}


def test_a_nan_in_a_stored_result_is_written_as_null() -> None:
    # A run's result file is read with json.loads, which takes NaN; JSON has no NaN. The
    # stdlib (allow_nan=False) failed the whole answer with a 500; orjson writes null.
    assert _rendered({"result": {"x": float("nan"), "y": [float("inf")]}}) == (
        b'{"result":{"x":null,"y":[null]}}'
    )
