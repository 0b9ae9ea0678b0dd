"""MCP tools of task definitions and schedules (issue 11). They call the App only and share
the REST views; schemas are kept small (tools/list is read by every model on every session)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mcpexec.definitions import task_view
from mcpexec.errors import InvalidRequest
from mcpexec.mcp_server import schemas as sch
from mcpexec.mcp_server.common import Deps, tool_errors
from mcpexec.schedule_ops import ScheduleRequest, schedule_view
from mcpexec.task_files import parse_task
from mcpexec.tasks import TaskDefinition

TaskName = Annotated[str, Field(description="task name; NAME@VERSION for one version")]
ScheduleId = Annotated[str, Field(description="schedule id (from create_schedule)")]
Params = Annotated[dict[str, Any] | None, Field(description="the task's parameters")]
M = TypeVar("M", bound=BaseModel)


class TaskInfo(BaseModel):
    """A task version; definition without defaults."""

    model_config = ConfigDict(extra="allow")

    name: str
    version: int


class DefineResult(TaskInfo):
    created: bool = Field(description="false: unchanged (same content)")


class TaskList(BaseModel):
    tasks: list[TaskInfo]


class ScheduleInfo(BaseModel):
    """A schedule, its policies and status (as REST shows it)."""

    model_config = ConfigDict(extra="allow")

    id: str
    task: str


class ScheduleList(BaseModel):
    schedules: list[ScheduleInfo]


class Deleted(BaseModel):
    deleted: str


def _validated(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "definition"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise InvalidRequest(f"field {field!r}: {message}", field=field) from None


def _definition(name: str, definition: dict[str, Any] | str) -> TaskDefinition:
    if isinstance(definition, str):
        return parse_task(definition, name=name, source="definition")
    return _validated(TaskDefinition, {**definition, "name": name})


def register_task_tools(server: MCPServer[Any], deps: Deps) -> None:
    app = deps.app

    @server.tool(
        title="Define task",
        annotations=sch.hints(read_only=False, destructive=False),
        description=(
            "Define a named task (a run spec, params as a JSON Schema); new content is a new "
            "version."
        ),
    )
    async def define_task(
        name: Annotated[str, Field(description="lower-case name, e.g. nightly-report")],
        definition: Annotated[
            dict[str, Any] | str,
            Field(description="submit_run's fields plus description, params; or YAML text"),
        ],
    ) -> DefineResult:
        with tool_errors():
            record, created = await app.tasks.define(
                _definition(name, definition), deps.principal()
            )
            return DefineResult.model_validate({**task_view(record), "created": created})

    @server.tool(
        title="List tasks",
        annotations=sch.hints(read_only=True),
        description="List tasks (latest versions).",
    )
    async def list_tasks(archived: bool = False) -> TaskList:
        with tool_errors():
            found = await app.tasks.list_tasks(deps.principal(), archived)
            return TaskList(tasks=[TaskInfo.model_validate(task_view(r)) for r in found])

    @server.tool(
        title="Get task",
        annotations=sch.hints(read_only=True),
        description="Get a task's definition (latest version, or NAME@VERSION).",
    )
    async def get_task(name: TaskName) -> TaskInfo:
        with tool_errors():
            return TaskInfo.model_validate(task_view(await app.tasks.get(name, deps.principal())))

    @server.tool(
        title="Create schedule",
        annotations=sch.hints(read_only=False, destructive=False),
        description="Run a task on a schedule (cron or every); returns its id and next fire.",
    )
    async def create_schedule(
        task: TaskName,
        cron: Annotated[
            str | None, Field(description="'0 3 * * *'; 6 fields: seconds first")
        ] = None,
        every: Annotated[str | None, Field(description="interval: 30s, 5m, 1h")] = None,
        timezone: str = "UTC",
        overlap: Literal["skip", "buffer_one", "allow_all", "cancel_previous"] = "skip",
        params: Params = None,
    ) -> ScheduleInfo:
        fields: dict[str, Any] = {"task": task, "cron": cron, "every": every, "params": params}
        fields.update(timezone=timezone, overlap=overlap)
        with tool_errors():
            request = _validated(
                ScheduleRequest, {k: v for k, v in fields.items() if v is not None}
            )
            created = await app.schedules.create(request, deps.principal())
            return ScheduleInfo.model_validate(schedule_view(created))

    @server.tool(
        title="List schedules",
        annotations=sch.hints(read_only=True),
        description="List schedules with next fire and last outcome.",
    )
    async def list_schedules() -> ScheduleList:
        with tool_errors():
            found = await app.schedules.list_schedules(deps.principal())
            return ScheduleList(
                schedules=[ScheduleInfo.model_validate(schedule_view(s)) for s in found]
            )

    @server.tool(
        title="Update schedule",
        annotations=sch.hints(read_only=False, destructive=False),
        description="Change a schedule (cron, every, timezone, overlap, paused, params); at once.",
    )
    async def update_schedule(
        schedule_id: ScheduleId,
        changes: Annotated[dict[str, Any], Field(description="fields to change")],
    ) -> ScheduleInfo:
        with tool_errors():
            updated = await app.schedules.update(schedule_id, changes, deps.principal())
            return ScheduleInfo.model_validate(schedule_view(updated))

    @server.tool(
        title="Delete schedule",
        annotations=sch.hints(read_only=False, destructive=True),
        description="Delete a schedule (its runs stay).",
    )
    async def delete_schedule(schedule_id: ScheduleId) -> Deleted:
        with tool_errors():
            await app.schedules.delete(schedule_id, deps.principal())
            return Deleted(deleted=schedule_id)
