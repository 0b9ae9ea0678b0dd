"""A minimal client half of the tasks extension (SEP-2663) for the tests: opt in, receive the
task, poll ``tasks/get`` until it is terminal, ``tasks/cancel``.

``tasks/get`` answers are validated strictly, as the extension's schema (and the real tasks
clients, fastmcp-tasks and the Inspector) read them: ``resultType: "complete"``, no unknown
fields, and exactly the outcome field the status calls for."""

from __future__ import annotations

from typing import Any, Literal, Self

import anyio
from mcp import types
from mcp.client import ClientExtension
from mcp.client.extension import ClaimContext, ResultClaim
from mcp.client.session import ClientSession
from mcp_types import RequestParams, Result
from pydantic import ConfigDict, model_validator

TASKS = "io.modelcontextprotocol/tasks"
TERMINAL = {"completed", "failed", "cancelled"}


class Task(Result):
    model_config = ConfigDict(extra="allow")

    result_type: Literal["task"] = "task"
    task_id: str
    status: str
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None = None
    poll_interval_ms: int | None = None
    result: dict[str, Any] | None = None


TaskStatus = Literal["working", "input_required", "completed", "failed", "cancelled"]
#: Which outcome field a ``tasks/get`` answer carries for each status (SEP-2663).
_OUTCOME = {"completed": "result", "failed": "error", "input_required": "input_requests"}


class TaskState(Result):
    """``tasks/get``'s answer, validated as strictly as the real tasks clients do."""

    model_config = ConfigDict(extra="forbid")

    result_type: Literal["complete"]  # narrower than Result's
    task_id: str
    status: TaskStatus
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None = None
    poll_interval_ms: int | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    input_requests: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_outcome(self) -> Self:
        present = {f for f in ("result", "error", "input_requests") if getattr(self, f)}
        wanted = {_OUTCOME[self.status]} if self.status in _OUTCOME else set()
        if present != wanted:
            raise ValueError(f"a {self.status} task carries {wanted or 'nothing'}, not {present}")
        return self


class TaskParams(RequestParams):
    task_id: str


class TasksGet(types.Request[TaskParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    params: TaskParams
    name_param = "taskId"


class TasksCancel(types.Request[TaskParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    params: TaskParams
    name_param = "taskId"


async def tasks_get(session: ClientSession, task_id: str) -> TaskState:
    return await session.send_request(TasksGet(params=TaskParams(task_id=task_id)), TaskState)


async def tasks_cancel(session: ClientSession, task_id: str) -> None:
    await session.send_request(TasksCancel(params=TaskParams(task_id=task_id)), types.EmptyResult)


async def poll_until_done(session: ClientSession, task_id: str, timeout_s: float) -> TaskState:
    with anyio.fail_after(timeout_s):
        while True:
            state = await tasks_get(session, task_id)
            if state.status in TERMINAL:
                return state
            await anyio.sleep(0.1)  # the protocol is polling (pollIntervalMs); nothing to await


class TasksClient(ClientExtension):
    identifier = TASKS

    def claims(self) -> list[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=Task, resolve=self._resolve)]

    async def _resolve(self, task: Task, ctx: ClaimContext) -> types.CallToolResult:
        state = await poll_until_done(ctx.session, task.task_id, 60)
        assert state.result is not None
        return types.CallToolResult.model_validate(state.result)
