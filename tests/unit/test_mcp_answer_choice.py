"""Which MCP requests over HTTP are answered as one JSON body (``mcp_server/answers.py``); the
wiring into a real serve is tested in ``tests/mcp_server/test_mcp_answers.py``."""

from __future__ import annotations

from typing import Any

import pytest

from mcpexec.mcp_server.answers import PER_REQUEST, answering, answers_as_json

READS = frozenset({"get_run", "list_runs"})


def request(method: str, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return request("tools/call", name=name, arguments=arguments)


@pytest.mark.parametrize(
    "message",
    [
        request("tools/list"),
        request("resources/read", uri="mcpexec://runs/r"),
        request("ping"),
        call("get_run", run_id="r"),
        call("get_run", run_id="r", wait_s=0),
        call("list_runs"),
        {"jsonrpc": "2.0", "id": 0, "method": "tools/list"},  # no params at all
    ],
)
def test_reads_that_cannot_wait_are_json(message: dict[str, Any]) -> None:
    assert answers_as_json(message, READS)


@pytest.mark.parametrize(
    "message",
    [
        request("initialize", protocolVersion="2025-11-25"),  # the session's task starts in it
        request("subscriptions/listen"),
        request("tasks/get", taskId="t"),
        request("resources/subscribe", uri="mcpexec://runs/r"),
        call("execute", command=["true"]),  # acts (and waits)
        call("submit_run", command=["true"]),
        call("get_run", run_id="r", wait_s=0.5),  # waits
        call("get_run", run_id="r", wait_s="soon"),  # refused, as a stream as before
        call("get_run", run_id="r", wait_s=True),
        {
            **call("get_run", run_id="r"),
            "params": {"name": "get_run", "_meta": {"progressToken": 0}},
        },
        {**call("list_runs"), "params": {"name": "list_runs", "task": {"ttl": 1}}},
        call("some_workflow"),  # an exposed workflow: not a read-only built-in
        {"jsonrpc": "2.0", "method": "notifications/initialized"},  # no id: 202 anyway
        [request("tools/list")],  # a batch
        None,  # not JSON
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": "x"},
    ],
)
def test_what_acts_waits_or_asks_for_progress_is_a_stream(message: Any) -> None:
    assert not answers_as_json(message, READS)


def test_the_flag_follows_the_request_it_is_tested_in() -> None:
    assert not PER_REQUEST
    with answering(True):
        assert PER_REQUEST
        with answering(False):
            assert not PER_REQUEST
        assert PER_REQUEST
    assert not PER_REQUEST
