"""``/api/v1/tasks``: define (``PUT``, YAML or JSON body), list, versions, diff, archive."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse

from mcpexec.api.deps import AppDep, PrincipalDep
from mcpexec.definitions import task_view
from mcpexec.errors import InvalidRequest
from mcpexec.models import TASK_NAME_PATTERN
from mcpexec.task_files import Format, parse_task
from mcpexec.tasks import TaskDefinition


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """``node`` with every ``#/$defs/X`` reference replaced by its definition (none recurse)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _definition_body() -> dict[str, Any]:
    """The body is read raw (YAML or JSON); the document still says what it takes: the
    definition's fields, ``name`` optional (the path gives it) and equal to the path's."""
    schema = TaskDefinition.model_json_schema()
    schema = _inline(schema, schema.get("$defs", {}))
    schema["required"] = [f for f in schema.get("required", []) if f != "name"]
    kinds = ("application/json", "application/yaml")
    return {"requestBody": {"required": True, "content": {k: {"schema": schema} for k in kinds}}}


router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"])

TaskName = Annotated[str, PathParam(pattern=TASK_NAME_PATTERN, max_length=64)]
# As far as a task reference spells a version (TASK_REF_PATTERN: at most 18 digits).
MAX_VERSION = 10**18 - 1

_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


def _format(request: Request) -> Format | None:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        return "json"
    return "yaml" if kind in _YAML_TYPES else None


@router.put(
    "/{name}",
    summary="Define a task: a new version when the content changed",
    openapi_extra=_definition_body(),
    responses={201: {"description": "A new version"}},
)
async def define_task(
    name: TaskName, request: Request, app: AppDep, principal: PrincipalDep
) -> JSONResponse:
    try:
        text = (await request.body()).decode()
    except UnicodeDecodeError:
        raise InvalidRequest("the definition is not UTF-8 text", field="body") from None
    task = parse_task(text, name=name, fmt=_format(request), source="body")
    record, created = await app.tasks.define(task, principal)
    body = {**task_view(record), "created": created}
    headers = {"Location": f"/api/v1/tasks/{record.name}/versions/{record.version}"}
    return JSONResponse(body, status_code=201 if created else 200, headers=headers)


@router.get("", summary="The latest version of every task")
async def list_tasks(
    app: AppDep, principal: PrincipalDep, archived: bool = False
) -> dict[str, Any]:
    return {"tasks": [task_view(r) for r in await app.tasks.list_tasks(principal, archived)]}


@router.get("/{name}", summary="A task's latest version")
async def get_task(name: TaskName, app: AppDep, principal: PrincipalDep) -> dict[str, Any]:
    return task_view(await app.tasks.get(name, principal))


@router.get("/{name}/versions", summary="Every version of a task, oldest first")
async def versions(name: TaskName, app: AppDep, principal: PrincipalDep) -> dict[str, Any]:
    return {"versions": [task_view(r) for r in await app.tasks.versions(name, principal)]}


@router.get("/{name}/versions/{version}", summary="One version of a task")
async def version(
    name: TaskName,
    version: Annotated[int, PathParam(ge=1, le=MAX_VERSION)],
    app: AppDep,
    principal: PrincipalDep,
) -> dict[str, Any]:
    return task_view(await app.tasks.get(f"{name}@{version}", principal))


@router.get("/{name}/diff", summary="Unified diff of two versions (?from=1&to=2)")
async def diff(
    name: TaskName,
    app: AppDep,
    principal: PrincipalDep,
    old: Annotated[int, Query(alias="from", ge=1, le=MAX_VERSION)],
    new: Annotated[int, Query(alias="to", ge=1, le=MAX_VERSION)],
) -> dict[str, Any]:
    return {
        "name": name,
        "from": old,
        "to": new,
        "diff": await app.tasks.diff(name, old, new, principal),
    }


@router.post("/{name}/archive", summary="Archive a task (its runs and versions stay readable)")
async def archive(name: TaskName, app: AppDep, principal: PrincipalDep) -> dict[str, Any]:
    return task_view(await app.tasks.archive(name, principal))
