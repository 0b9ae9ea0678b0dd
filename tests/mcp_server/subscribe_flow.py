"""The 2025-11-25 ``resources/subscribe`` flow, shared by the in-memory and the HTTP tests: a run
that writes its output when the test says so (gate files), a session subscribed to its logs and
to the run, and the ``notifications/resources/updated`` that session receives."""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp import types as mt

#: Every wait for a notification is bounded by this.
WAIT_S = 30.0


class Updates:
    """A ``message_handler`` that records ``notifications/resources/updated`` URIs in order."""

    def __init__(self) -> None:
        self.uris: list[str] = []
        self._send, self._recv = anyio.create_memory_object_stream[str](math.inf)

    async def __call__(self, message: Any) -> None:
        if isinstance(message, mt.ResourceUpdatedNotification):
            self.uris.append(message.params.uri)
            await self._send.send(message.params.uri)

    async def until(self, uri: str) -> None:
        """Wait (bounded) for the next update of ``uri``; updates of other URIs are skipped."""
        with anyio.move_on_after(WAIT_S):
            async for got in self._recv:
                if got == uri:
                    return
        raise AssertionError(f"no update of {uri} in {WAIT_S}s; got {self.uris}")


def gated_script(gates: Path) -> str:
    """A shell script that prints ``first`` once ``gates/1`` exists, then ``second`` and exits
    once ``gates/2`` exists (the child polls; the test only awaits notifications)."""
    g = shlex.quote(str(gates))
    return (
        f"until [ -e {g}/1 ]; do sleep 0.05; done; echo first; "
        f"until [ -e {g}/2 ]; do sleep 0.05; done; echo second"
    )


def structured(result: mt.CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def subscribe_and_follow(client: Client, updates: Updates, gates: Path) -> None:
    """Subscribe to a running run's stdout and to the run; output and completion each notify;
    after unsubscribing from the logs their later output does not."""
    caps = client.server_capabilities.resources
    assert caps is not None
    assert caps.subscribe is True
    await anyio.Path(gates).mkdir(parents=True, exist_ok=True)
    run_id = structured(await client.call_tool("submit_run", {"shell": gated_script(gates)}))[
        "run_id"
    ]
    run_uri = f"mcpexec://runs/{run_id}"
    log_uri = f"{run_uri}/logs/stdout"
    await client.subscribe_resource(log_uri)
    await client.subscribe_resource(run_uri)

    await anyio.Path(gates / "1").touch()
    await updates.until(log_uri)
    logs = (await client.read_resource(log_uri)).contents[0]
    assert isinstance(logs, mt.TextResourceContents)
    assert logs.text == "first\n"

    await client.unsubscribe_resource(log_uri)
    seen = len(updates.uris)
    await anyio.Path(gates / "2").touch()
    with anyio.fail_after(WAIT_S):
        while True:
            await updates.until(run_uri)
            run = (await client.read_resource(run_uri)).contents[0]
            assert isinstance(run, mt.TextResourceContents)
            if json.loads(run.text)["status"] == "completed":
                break
    # The watcher publishes a run's log updates before (or with) its status change, and one
    # session's notifications arrive in order: "second" would have been notified by now.
    assert log_uri not in updates.uris[seen:]
    logs = (await client.read_resource(log_uri)).contents[0]
    assert isinstance(logs, mt.TextResourceContents)
    assert logs.text == "first\nsecond\n"
