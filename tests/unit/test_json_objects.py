"""Every free-form JSON object of a request refuses NaN and Infinity (Python's parsers take
them; JSON has neither): run and schedule parameters, a tool's arguments, a workflow's start
parameters and definition, a task definition's parameter schema."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from mcpexec.api.routes.gateway import ToolCallBody
from mcpexec.api.routes.workflows import StartRequest
from mcpexec.models import RunRequest, ToolCall
from mcpexec.schedule_ops import ScheduleChanges, ScheduleRequest
from mcpexec.tasks import TaskDefinition
from mcpexec.workflows.spec import WorkflowDefinition

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (RunRequest, {"task": "t", "params": {"x": NAN}}),
        (ToolCall, {"server": "s", "name": "t", "arguments": {"a": [1, {"b": INF}]}}),
        (ToolCallBody, {"arguments": {"a": -INF}}),
        (StartRequest, {"workflow": "w", "params": {"x": [NAN]}}),
        (ScheduleRequest, {"task": "t", "cron": "* * * * *", "params": {"x": NAN}}),
        (ScheduleChanges, {"params": {"x": INF}}),
        (TaskDefinition, {"name": "t", "shell": "true", "params": {"default": NAN}}),
        (WorkflowDefinition, {"name": "w", "params": {"default": INF}, "steps": []}),
    ],
)
def test_a_non_finite_number_is_refused(model: type[BaseModel], data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="is not a JSON number"):
        model.model_validate(data)


def test_finite_numbers_and_nested_values_pass() -> None:
    call = ToolCall(server="s", name="t", arguments={"a": [1, 2.5, {"b": -1e308}], "c": None})
    assert call.arguments == {"a": [1, 2.5, {"b": -1e308}], "c": None}
