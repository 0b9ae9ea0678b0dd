"""Schemathesis hooks for the live-API fuzz test (loaded through ``SCHEMATHESIS_HOOKS``).

They bend generated data only where the OpenAPI document cannot know the server's state or
cannot spell a rule: secret names must be configured on the server (an unknown one is a correct
422); a definition's name must be its path's; a schedule's parameters are checked against its
task's schema (a bound that clashes with the schedule's stored other one is a 409, which
the fuzzer accepts as an answer to valid data); a cron expression's
fields, a zone's IANA name, an interval's range and a parameter schema's validity are grammar no
pattern holds; the fuzzer's own tenant gets no runtime cap or resource maximum (later
submits over it would be refused); a workflow's steps are exactly one kind each and its
``needs`` a DAG, and its ``mcp_tool`` names are left out (whether one is free depends on
earlier definitions; in positive cases only). A long-poll ``wait`` on a run that will never
finish would hold a request for up to 300 s, and an event stream until its ``timeout``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import schemathesis

from mcpexec.errors import InvalidRequest
from mcpexec.params import check_params_schema
from mcpexec.schedules import ScheduleSpec
from mcpexec.workflows.spec import STEP_KINDS, StepSpec, parse_workflow

_NAME = re.compile(r"(?!MCPEXEC_)[A-Za-z_][A-Za-z0-9_]{0,127}")


def _valid(field: str, value: Any) -> bool:
    try:
        ScheduleSpec.model_validate(
            {"every": "1m", field: value} if field != "every" else {field: value}
        )
    except ValueError:
        return False
    return True


def _schedule_body(body: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in body.items() if k != "params"}
    for field, stand_in in (("cron", "*/5 * * * *"), ("every", "5m"), ("timezone", "UTC")):
        value = body.get(field)
        if value is not None and not _valid(field, value):
            body[field] = stand_in
    start, end = body.get("start_at"), body.get("end_at")
    if isinstance(start, str) and isinstance(end, str) and not _valid("start_at", start):
        body.pop("start_at")
    elif isinstance(start, str) and isinstance(end, str):
        try:
            ScheduleSpec.model_validate({"every": "1m", "start_at": start, "end_at": end})
        except ValueError:
            body["start_at"], body["end_at"] = end, start
    return body


def _positive(case: Any) -> bool:
    meta = getattr(case, "meta", None)
    mode = getattr(getattr(meta, "generation", None), "mode", None)
    return str(getattr(mode, "value", mode)) == "positive"


def _workflow_step(step: dict[str, Any], earlier: dict[str, Any]) -> dict[str, Any]:
    kinds = [k for k in STEP_KINDS if step.get(k) is not None]
    step = {k: v for k, v in step.items() if k not in STEP_KINDS or k in kinds[:1]}
    if not kinds:
        step["shell"] = "true"
    needs = step.get("needs")
    if isinstance(needs, list):  # only earlier steps, once each: always a DAG
        step["needs"] = list(dict.fromkeys(d for d in needs if d in earlier))
    try:
        StepSpec.model_validate(step)
    except ValueError:
        return {"shell": "true", "needs": step.get("needs", [])}
    return step


def _without_tools(body: dict[str, Any]) -> dict[str, Any]:
    """No ``mcp_tool`` names: which are free depends on the workflows defined before."""
    body = {k: v for k, v in body.items() if k != "mcp_tool"}
    steps = body.get("steps")
    if isinstance(steps, dict):
        body["steps"] = {
            n: {k: v for k, v in s.items() if k != "mcp_tool"} if isinstance(s, dict) else s
            for n, s in steps.items()
        }
    return body


def _workflow_body(body: dict[str, Any]) -> dict[str, Any]:
    body = _without_tools(body)
    try:
        parse_workflow(json.dumps(body), fmt="json")
    except (InvalidRequest, TypeError, ValueError):
        pass
    else:
        return body
    steps = body.get("steps")
    if isinstance(steps, dict):
        fixed: dict[str, Any] = {}
        for name, step in steps.items():
            fixed[name] = _workflow_step(step, fixed) if isinstance(step, dict) else step
        body = {**body, "steps": fixed}
    if "params" in body:
        try:
            check_params_schema(body["params"])
        except (ValueError, TypeError):
            body = {k: v for k, v in body.items() if k != "params"}
    return body


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    # map_case, not map_body/map_query: the coverage phase applies only case hooks.
    path, body, query = case.operation.path, case.body, case.query
    secrets = body.get("secrets") if isinstance(body, dict) else None
    # Only names (valid ones): a list holding something else is a negative case to keep.
    if isinstance(secrets, list) and all(
        isinstance(x, str) and _NAME.fullmatch(x) for x in secrets
    ):
        body = {k: v for k, v in body.items() if k != "secrets"}
    if isinstance(body, dict) and path.startswith("/api/v1/schedules"):
        body = _schedule_body(body)
    if isinstance(body, dict) and path == "/api/v1/tasks/{name}" and "name" in body:
        body = {**body, "name": (case.path_parameters or {}).get("name", body["name"])}
    if isinstance(body, dict) and path.startswith("/api/v1/tasks") and "params" in body:
        try:
            check_params_schema(body["params"])
        except (ValueError, TypeError):
            body = {k: v for k, v in body.items() if k != "params"}
    if isinstance(body, dict) and path == "/api/v1/workflows" and _positive(case):
        body = _workflow_body(body)
    if isinstance(body, dict) and path == "/api/v1/workflow-runs" and _positive(case):
        # checked against the workflow's own schema, which the document cannot know
        body = {k: v for k, v in body.items() if k != "params"}
    tenant = (case.path_parameters or {}).get("tenant_id")
    if isinstance(body, dict) and path == "/api/v1/tenants/{tenant_id}" and tenant == "default":
        # The fuzzer's own tenant: a runtime cap or resource maximum set on it makes a later
        # schema-valid submit a correct 422 (over max_runtime_s), state the document cannot know.
        body = {k: v for k, v in body.items() if k not in ("max_runtime_s", "max_limits")}
    if isinstance(query, dict) and isinstance(query.get("wait"), int | float):
        query = {**query, "wait": min(query["wait"], 0.5)}
    if isinstance(query, dict) and query.get("follow") in (True, "true"):
        # A follower streams until the run ends; the fuzzer reads whole bodies.
        query = {**query, "follow": False}
    if path == "/api/v1/events" and (isinstance(query, dict) or query is None):
        # An event stream lasts until ?timeout= (or ?limit= events): bound it for the fuzzer.
        query = dict(query or {})
        given = query.get("timeout")
        number = isinstance(given, int | float) and not isinstance(given, bool)
        if "timeout" not in query or (number and given > 0.5):  # type: ignore[operator]
            query["timeout"] = 0.5
    if body is not case.body:
        case.body = body
    if query is not case.query:
        case.query = query
    return case
