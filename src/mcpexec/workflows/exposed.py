"""Workflows and steps exposed as named MCP tools (``mcp_tool:``, issue 16).

A workflow with ``mcp_tool: NAME`` or a step with ``mcp_tool: NAME`` is a tool of that name in
its tenant's ``tools/list``, whose input is the workflow's parameters. Calling it starts a
workflow run with them and answers with the run's state once the step is done (completed,
failed, skipped, waiting at its gate…) — for the workflow's own tool once the run ended or
waits — or when ``wait_s`` is over, whichever is first. Seed 004's ``tmops_init_feature`` is
the ``init`` step's tool: it starts the feature's workflow run and answers when the init script
ran. The tool names of a tenant are unique across its workflows (checked when one is defined).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mcpexec.errors import InvalidRequest, WorkflowToolNotFound
from mcpexec.store.base import WorkflowRunRecord
from mcpexec.workflows.spec import WorkflowDefinition, load_definition
from mcpexec.workflows.state import StepStatus, WorkflowStatus

if TYPE_CHECKING:
    from mcpexec.app import Principal
    from mcpexec.workflows.ops import WorkflowOps

#: Step states that are not "done yet" for a step's tool.
_STEP_GOING = frozenset({StepStatus.PENDING, StepStatus.RUNNING})
_RUN_GOING = frozenset({WorkflowStatus.QUEUED, WorkflowStatus.RUNNING})
#: How long one wait lasts before the state is read again (a change saved by another process).
_REREAD_S = 1.0
DEFAULT_WAIT_S = 60.0
MAX_WAIT_S = 3600.0
#: The one argument of an exposed tool that is not a workflow parameter (unless the workflow
#: has a parameter of that name: then it is the parameter, and the wait is the default).
WAIT_S = "wait_s"


@dataclass(frozen=True)
class ExposedTool:
    name: str
    workflow: str
    step: str | None
    description: str
    #: The workflow's parameters (JSON Schema): the tool's input.
    params: dict[str, Any]


def tools_of(workflow: str, definition: WorkflowDefinition) -> list[ExposedTool]:
    found = []
    for tool, step in definition.exposed_tools():
        if step is None:
            what = definition.description or f"Start a run of workflow {workflow!r}."
            done = "answers when the run ends or waits"
        else:
            what = definition.steps[step].description or (f"Start a run of workflow {workflow!r}.")
            done = f"answers when its step {step!r} is done"
        description = f"{what} (workflow {workflow}: {done}; status: get_workflow_status)"
        found.append(ExposedTool(tool, workflow, step, description, definition.params))
    return found


async def exposed_tools(ops: WorkflowOps, principal: Principal) -> list[ExposedTool]:
    """The tools the caller's tenant's workflows expose (their latest versions)."""
    found: list[ExposedTool] = []
    for record in await ops.list_workflows(principal):
        if record.tenant == principal.tenant:  # an admin lists every tenant's; starts its own
            found.extend(tools_of(record.name, load_definition(record.definition)))
    return found


async def check_unique(
    ops: WorkflowOps, name: str, definition: WorkflowDefinition, principal: Principal
) -> None:
    """Refuse a tool name another workflow of the tenant already exposes."""
    mine = {tool for tool, _ in definition.exposed_tools()}
    if not mine:
        return
    for tool in await exposed_tools(ops, principal):
        if tool.name in mine and tool.workflow != name:
            raise InvalidRequest(
                f"MCP tool {tool.name!r} is already exposed by workflow {tool.workflow!r}; "
                "choose another mcp_tool name",
                field="mcp_tool",
            )


def takes_wait(tool: ExposedTool) -> bool:
    return WAIT_S not in tool.params.get("properties", {})


async def call_exposed(
    ops: WorkflowOps, name: str, arguments: dict[str, Any], principal: Principal
) -> WorkflowRunRecord:
    """Start the workflow run behind tool ``name`` with ``arguments`` (its parameters, and
    ``wait_s``) and wait (bounded) for what it answers."""
    tool = next((t for t in await exposed_tools(ops, principal) if t.name == name), None)
    if tool is None:
        raise WorkflowToolNotFound(f"no workflow exposes the tool {name!r}", tool=name)
    params = dict(arguments)
    wait_s = params.pop(WAIT_S, DEFAULT_WAIT_S) if takes_wait(tool) else DEFAULT_WAIT_S
    if isinstance(wait_s, bool) or not isinstance(wait_s, int | float) or wait_s < 0:
        raise InvalidRequest(f"{WAIT_S}: a number of seconds, 0 to {MAX_WAIT_S:g}", field=WAIT_S)
    rec = await ops.start(tool.workflow, params, principal)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0.0, min(wait_s, MAX_WAIT_S))
    while not _answered(rec, tool.step) and (left := deadline - loop.time()) > 0:
        await ops.engine.wait_saved(rec.id, min(left, _REREAD_S))
        rec = await ops.get_run(rec.id, principal)
    return rec


def _answered(rec: WorkflowRunRecord, step: str | None) -> bool:
    if WorkflowStatus(rec.status) not in _RUN_GOING:
        return True
    if step is None:
        return False
    status = rec.state.get("steps", {}).get(step, {}).get("status", StepStatus.PENDING)
    return StepStatus(status) not in _STEP_GOING
