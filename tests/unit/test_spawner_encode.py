"""The spawn helper's requests: what the helper's ``json.loads`` reads back is the request sent,
whichever encoder wrote it."""

from __future__ import annotations

import json
import os

from mcpexec.executor.spawner import _encode


def test_a_request_reads_back_as_sent() -> None:
    request = {"id": 7, "argv": ["sh", "-c", "echo é"], "env": {"LANG": "C.UTF-8", "X": "✓"}}
    assert json.loads(_encode(request)) == request


def test_a_non_utf8_environment_value_reads_back_as_its_bytes() -> None:
    # os.environ holds a non-UTF-8 byte as a lone surrogate, which orjson refuses.
    value = os.fsdecode(b"caf\xe9")
    decoded = json.loads(_encode({"id": 1, "env": {"TZ": value}}))
    assert os.fsencode(decoded["env"]["TZ"]) == b"caf\xe9"
