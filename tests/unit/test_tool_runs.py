"""The tool run kind's pure parts: the request shape (``models.ToolCall``) and how a gateway
failure becomes an attempt's failure kind (``tools_service``)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mcpexec.gateway.errors import (
    DownstreamUnavailable,
    InvalidArguments,
    PathOutsideSandbox,
    PoolExhausted,
    ServerLost,
    ToolError,
    ToolTimeout,
    UnknownTool,
)
from mcpexec.models import FailureKind, RunFilter, RunRequest, ToolCall
from mcpexec.tools_service import _failure_kind


@pytest.mark.parametrize(
    ("given", "server", "name"),
    [
        ({"server": "fs", "name": "read_text_file"}, "fs", "read_text_file"),
        ({"name": "everything.echo"}, "everything", "echo"),
        ({"name": "a.b.c"}, "a", "b.c"),  # the first dot splits
        ({"server": "x", "name": "y.z"}, "x", "y.z"),  # with a server, the name is as given
    ],
)
def test_tool_call_names(given: dict[str, str], server: str, name: str) -> None:
    call = ToolCall.model_validate(given)
    assert (call.server, call.name, call.qualified) == (server, name, f"{server}.{name}")


@pytest.mark.parametrize(
    "given",
    [
        {"name": "echo"},  # no server
        {"name": ".echo"},
        {"name": "a b.echo"},
        {"server": "a/b", "name": "echo"},
        {"server": "fs", "name": "x\0y"},
        {"server": "fs", "name": ""},
        {"name": "fs.x", "extra": 1},
    ],
)
def test_tool_call_refusals(given: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ToolCall.model_validate(given)


def test_a_tool_is_one_kind_of_run() -> None:
    run = RunRequest.model_validate({"tool": {"name": "fs.list_directory"}})
    assert run.kind == "tool"
    assert run.exec_spec().tool == ToolCall(server="fs", name="list_directory")
    assert run.summary() == "[tool] fs.list_directory {}"
    with pytest.raises(ValidationError, match="exactly one"):
        RunRequest.model_validate({"tool": {"name": "fs.x"}, "shell": "true"})
    with pytest.raises(ValidationError, match="not both"):
        RunRequest.model_validate({"tool": {"name": "fs.x"}, "task": "t"})
    assert RunFilter(tool="fs.x").tool == "fs.x"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ServerLost(), FailureKind.SERVER_LOST),
        (DownstreamUnavailable(), FailureKind.SERVER_LOST),
        (ToolTimeout(), FailureKind.TIMEOUT),
        (PoolExhausted(), FailureKind.TIMEOUT),
        (UnknownTool(), FailureKind.VALIDATION),
        (InvalidArguments(), FailureKind.VALIDATION),
        (ToolError(), FailureKind.TOOL_ERROR),
        (PathOutsideSandbox("/etc/passwd"), FailureKind.TOOL_ERROR),
    ],
)
def test_failure_kinds(error: Exception, kind: FailureKind) -> None:
    assert _failure_kind(error) is kind  # type: ignore[arg-type]
