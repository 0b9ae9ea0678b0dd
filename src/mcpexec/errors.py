"""Errors with stable codes. Every adapter maps them the same way (REST status, MCP tool error).

The docstring of each class is its default message; ``code`` is part of the public API.
"""

from __future__ import annotations

from typing import Any, ClassVar


class McpexecError(Exception):
    """Something went wrong in mcpexec."""

    code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or (self.__doc__ or self.code).strip()
        self.details = details
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class ConfigError(McpexecError):
    """The configuration is not valid."""

    code = "config_error"
    http_status = 500


class InvalidRequest(McpexecError):
    """The request is not valid."""

    code = "invalid_request"
    http_status = 422


class NotFound(McpexecError):
    """No such object (or it belongs to another tenant)."""

    code = "not_found"
    http_status = 404


class RunNotFound(NotFound):
    """No run with this id."""

    code = "run_not_found"


class ArtifactNotFound(NotFound):
    """The run has no artifact of this name."""

    code = "artifact_not_found"


class RangeNotSatisfiable(McpexecError):
    """The requested byte range is outside the artifact."""

    code = "range_not_satisfiable"
    http_status = 416


class Conflict(McpexecError):
    """The object is not in a state that allows this."""

    code = "conflict"
    http_status = 409


class RunNotTerminal(Conflict):
    """The run has not finished yet."""

    code = "run_not_terminal"


class IdempotencyConflict(Conflict):
    """This idempotency key was used with a different request; use a new key for a new run."""

    code = "idempotency_conflict"


class Unauthorized(McpexecError):
    """A valid bearer token is required (header 'Authorization: Bearer TOKEN')."""

    code = "unauthorized"
    http_status = 401


class Forbidden(McpexecError):
    """This token's role does not allow that."""

    code = "forbidden"
    http_status = 403


class PayloadTooLarge(McpexecError):
    """The request body is too large."""

    code = "payload_too_large"
    http_status = 413


class ServerUnavailable(McpexecError):
    """No mcpexec server answers at this address."""

    code = "server_unavailable"
    http_status = 503


class StoreError(McpexecError):
    """The store failed; the operation did not happen."""

    code = "store_error"
    http_status = 503


class StoreUnavailable(StoreError):
    """The database cannot be reached just now; the operation did not happen (or, for a
    write cut off at its commit, may have: a retried submit with an idempotency key is safe).
    Retry shortly."""

    code = "store_unavailable"
    http_status = 503

    def __init__(self, message: str | None = None, **details: object) -> None:
        details.setdefault("retry_after_s", 1)  # the API turns it into Retry-After
        super().__init__(message, **details)


class StorageQuotaExceeded(McpexecError):
    """The storage budget (logs and artifacts kept) is used up: no new runs until retention
    purges old ones or the budget is raised."""

    code = "storage_quota_exceeded"
    http_status = 507


class InvalidStoreUrl(StoreError):
    """The store URL (MCPEXEC_DATABASE_URL) is not one mcpexec can open."""

    code = "invalid_store_url"
    http_status = 500


class SandboxUnavailable(McpexecError, RuntimeError):
    """The configured sandbox mode cannot run on this host (`mcpexec doctor` says what is
    missing)."""

    code = "sandbox_unavailable"
    http_status = 503


class SecretsError(McpexecError, ValueError):
    """The server's secrets configuration is not valid."""

    code = "secrets_invalid"
    http_status = 500


# -- tasks and schedules (issue 11) -----------------------------------------------------------
class TaskNotFound(NotFound):
    """No task of this name (or version)."""

    code = "task_not_found"


class TaskArchived(Conflict):
    """The task is archived: its versions and runs stay readable, but it runs no more."""

    code = "task_archived"


class ScheduleNotFound(NotFound):
    """No schedule with this id."""

    code = "schedule_not_found"


# -- tenancy (issue 10) -------------------------------------------------------------------------
class QuotaExceeded(McpexecError):
    """The tenant's quota does not allow this now; retry later (``details.limit`` names the
    limit, ``details.retry_after_s`` says when to try again)."""

    code = "quota_exceeded"
    http_status = 429


class TenantNotFound(NotFound):
    """No tenant with this id."""

    code = "tenant_not_found"


class TokenNotFound(NotFound):
    """No token with this id."""

    code = "token_not_found"


# -- workflows (issue 16) -----------------------------------------------------------------------
class WorkflowNotFound(NotFound):
    """No workflow of this name (or version)."""

    code = "workflow_not_found"


class WorkflowRunNotFound(NotFound):
    """No workflow run with this id."""

    code = "workflow_run_not_found"


class WorkflowToolNotFound(NotFound):
    """No workflow of the caller's tenant exposes an MCP tool of this name (``mcp_tool``)."""

    code = "workflow_tool_not_found"


class StepNotFound(Conflict):
    """The workflow run has no step of this name. 409, not 404: the run exists and the caller
    may see it (its steps are in its status), a 404 would say the run is gone; and not 422: the
    name is a valid step name, which steps a run has is the state of its pinned definition."""

    code = "step_not_found"


class WorkflowStateConflict(Conflict):
    """The workflow run (or its step) is not in a state that allows this action."""

    code = "workflow_state"


class CheckpointInvalid(Conflict):
    """The step's checkpoint file is missing, unsafe or does not validate."""

    code = "checkpoint_invalid"


class EventsExpired(McpexecError):
    """The events after this id were pruned from the event log (its retention is
    events_max_count / events_retention_days): resume without Last-Event-ID (or with ?after=0
    for every event still kept) and re-read the state you need."""

    code = "events_expired"
    http_status = 410


class WebhookRefused(McpexecError):
    """The webhook URL is not an allowed target (see webhook_allow). 403: the server's policy
    refuses a well-formed request, as for a role that may not act."""

    code = "webhook_refused"
    http_status = 403


# -- batches (issue 12) -------------------------------------------------------------------------
class BatchRefused(Conflict):
    """Nothing of the batch was stored (``all_or_nothing``): ``details.errors`` names each item
    that failed by its ``index``, with that item's own code and message. Fix those items (or
    submit without ``all_or_nothing`` to store the valid ones) and submit the batch again."""

    code = "batch_refused"

    def __init__(self, failures: list[tuple[int, McpexecError]]) -> None:
        index, first = failures[0]
        super().__init__(
            f"nothing was stored: {len(failures)} of the batch's runs failed"
            f" (all_or_nothing); the first, item {index}: {first.code}: {first.message}",
            errors=[{"index": i, **e.to_dict()} for i, e in failures],
        )
        self.failures = failures


class BatchTooLarge(InvalidRequest):
    """A batch holds at most 1,000 runs: split it (the client and the CLI do)."""

    code = "batch_too_large"
