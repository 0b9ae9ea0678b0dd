"""The MCP tasks extension (``io.modelcontextprotocol/tasks``, SEP-2663) on durable runs.

When a client lists the extension in its capabilities, ``execute`` answers at once with a
task instead of blocking: the task IS the run (its id is the run id: 128 random bits), so it
survives a server restart, and ``tasks/get`` / ``tasks/cancel`` are ``App.get`` / ``App.cancel``.
Clients that did not opt in get the blocking ``execute``. Only runs created as tasks are tasks,
and only for the principal that created them (or an admin); anything else is an unknown task
(-32602). The task's status mirrors the run's (pending/running are ``working``); once the run
is terminal the task carries the same CallToolResult a blocking ``execute`` returns.

A run that ran and exited non-zero is a ``completed`` task whose result says ``status:
failed`` (the extension keeps ``failed`` for a request that failed, with an ``error``): the
caller keeps stdout and the exit code. A cancelled run is a ``cancelled`` task. ``tasks/get``
answers ``resultType: "complete"`` (the ``tasks/get`` request itself completed); only the
``tools/call`` that creates a task answers ``resultType: "task"``. Every ``tasks/*`` method
and ``subscriptions/listen`` with ``taskIds`` need the client to have opted in (-32021).
Task status is not pushed (``notifications/tasks``): clients poll, at ``pollIntervalMs``.

The extension's ``intercept_tool_call`` also sees every other ``tools/call``: it refuses
unknown or invalid arguments there first (see ``arguments.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from mcp import types
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver import MCPServer, require_client_extension
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, RequestParams
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcpexec.app import Principal
from mcpexec.mcp_server.common import (
    DEFAULT_TAIL_BYTES,
    Deps,
    build_request,
    execute_result,
    tool_errors,
)
from mcpexec.models import Run, RunStatus

TASKS = "io.modelcontextprotocol/tasks"
#: Label marking a run created as a task; its value is the creating principal's token id.
TASK_LABEL = "mcp/task"
POLL_INTERVAL_MS = 1000
_MODERN = frozenset(MODERN_PROTOCOL_VERSIONS)
_STATUS = {
    RunStatus.PENDING: "working",
    RunStatus.RUNNING: "working",
    RunStatus.COMPLETED: "completed",
    RunStatus.FAILED: "completed",  # the call ran; its result reports the failed run
    RunStatus.CANCELLED: "cancelled",
}
#: Tool arguments that only mean something to a blocking ``execute``.
_BLOCKING_ONLY = ("wait_s", "max_bytes")


class TaskParams(RequestParams):
    task_id: str


class TaskUpdateParams(TaskParams):
    input_responses: dict[str, Any] | None = None


class TasksExtension(Extension):
    identifier = TASKS

    def __init__(self, deps: Deps) -> None:
        self._deps = deps
        #: Set by the server once its tools exist: what is wrong with a call's arguments.
        self.check_arguments: Callable[[types.CallToolRequestParams], str | None] = lambda _p: None

    def methods(self) -> list[MethodBinding]:
        return [
            MethodBinding("tasks/get", TaskParams, self._get, _MODERN),
            MethodBinding("tasks/cancel", TaskParams, self._cancel, _MODERN),
            MethodBinding("tasks/update", TaskUpdateParams, self._update, _MODERN),
        ]

    async def intercept_tool_call(
        self,
        params: types.CallToolRequestParams,
        ctx: ServerRequestContext[Any, Any],
        call_next: CallNext,
    ) -> HandlerResult:
        problem = self.check_arguments(params)
        if problem is not None:
            return _error_result(problem)
        if params.name != "execute" or not _opted_in(ctx):
            return await call_next(ctx)
        principal = self._deps.principal()
        arguments = dict(params.arguments or {})
        for name in _BLOCKING_ONLY:
            arguments.pop(name, None)
        try:
            request = build_request(arguments)
        except ToolError as exc:
            return _error_result(str(exc))
        labels = {**request.labels, TASK_LABEL: principal.token_id}
        request = request.model_copy(update={"labels": labels})
        try:
            with tool_errors():
                run, _ = await self._deps.app.submit(request, principal, reserved=(TASK_LABEL,))
        except ToolError as exc:
            return _error_result(str(exc))
        self._deps.on_run_touched(run, principal)
        # The run is durably stored before this answer: the task exists from here on.
        return await self._task(run, principal)

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> HandlerResult:
        require_client_extension(ctx, TASKS)
        principal = self._deps.principal()
        task = await self._task(await self._run(params.task_id, principal), principal)
        return {**task, "resultType": "complete"}

    async def _cancel(
        self, ctx: ServerRequestContext[Any, Any], params: TaskParams
    ) -> HandlerResult:
        require_client_extension(ctx, TASKS)
        principal = self._deps.principal()
        run = await self._run(params.task_id, principal)
        if not run.terminal:
            with tool_errors():
                await self._deps.app.cancel(run.id, principal)
        return {}

    async def _update(
        self, ctx: ServerRequestContext[Any, Any], params: TaskUpdateParams
    ) -> HandlerResult:
        require_client_extension(ctx, TASKS)
        await self._run(params.task_id, self._deps.principal())
        return {}  # runs never ask for input; an update has nothing to deliver

    async def _run(self, task_id: str, principal: Principal) -> Run:
        try:
            with tool_errors():
                run = await self._deps.app.get(task_id, principal)
        except ToolError:
            run = None
        owner = run.labels.get(TASK_LABEL) if run is not None else None
        if run is None or owner is None or not (principal.is_admin or owner == principal.token_id):
            raise MCPError(code=INVALID_PARAMS, message=f"unknown task {task_id!r}")
        return run

    async def _task(self, run: Run, principal: Principal) -> dict[str, Any]:
        settings = self._deps.app.settings
        updated = run.finished_at or run.started_at or run.created_at
        task: dict[str, Any] = {
            "resultType": "task",
            "taskId": run.id,
            "status": _STATUS[run.status],
            "statusMessage": _status_message(run),
            "createdAt": run.created_at.isoformat(),
            "lastUpdatedAt": updated.isoformat(),
            # The run (and so the task) is kept until the retention purge.
            "ttlMs": int(settings.retention_days * 86_400_000),
            "pollIntervalMs": POLL_INTERVAL_MS,
        }
        if run.status in (RunStatus.COMPLETED, RunStatus.FAILED):
            outcome = await execute_result(self._deps.app, run, principal, DEFAULT_TAIL_BYTES)
            structured = outcome.model_dump(mode="json")
            result = types.CallToolResult(
                content=[types.TextContent(type="text", text=json.dumps(structured, indent=2))],
                structured_content=structured,
            )
            task["result"] = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        return task


def _opted_in(ctx: ServerRequestContext[Any, Any]) -> bool:
    if ctx.protocol_version not in _MODERN:
        return False
    capabilities = ctx.session.client_capabilities
    return bool(capabilities and capabilities.extensions and TASKS in capabilities.extensions)


def _status_message(run: Run) -> str:
    if run.status == RunStatus.PENDING:
        return "queued"
    if run.status == RunStatus.RUNNING:
        if run.progress is not None and run.progress.message:
            return run.progress.message
        return f"running (attempt {run.attempts})"
    if run.failure is not None:
        return run.failure.message
    return f"exit code {run.exit_code}" if run.exit_code is not None else run.status.value


def _error_result(message: str) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=message)], is_error=True
    )


def guard_listen(server: MCPServer[Any]) -> None:
    """``subscriptions/listen`` with ``taskIds``: refused (-32021) unless the client opted in to
    the extension, and never acknowledged (task status is polled, not pushed)."""
    lowlevel = server._lowlevel_server  # no public way to wrap a spec method's handler
    entry = lowlevel._request_handlers.get("subscriptions/listen")
    if entry is None:  # pragma: no cover - the SDK always serves it for 2026-07-28
        return
    inner = entry.handler

    async def listen(
        ctx: ServerRequestContext[Any, Any], params: types.SubscriptionsListenRequestParams
    ) -> Any:
        extra = params.notifications.model_extra or {}
        if "taskIds" in extra or "task_ids" in extra:
            require_client_extension(ctx, TASKS)
            kept = {k: v for k, v in extra.items() if k not in ("taskIds", "task_ids")}
            filter = params.notifications.model_copy()
            filter.__pydantic_extra__ = kept
            params = params.model_copy(update={"notifications": filter})
        return await inner(ctx, params)

    lowlevel.add_request_handler(
        "subscriptions/listen", types.SubscriptionsListenRequestParams, listen
    )
