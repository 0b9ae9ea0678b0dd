"""The ``result`` object of a finished job: seed 002's fields plus the engine's."""

from __future__ import annotations

import json
from typing import Any

from mcpexec.errors import McpexecError
from mcpexec.models import Run, RunStatus, utcnow


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def run_result(run: Run, stdout: bytes, stderr: bytes, cap: int) -> dict[str, Any]:
    """``stdout``/``stderr`` hold up to ``cap + 1`` bytes: more than ``cap`` means the result file
    shows the first ``cap`` only (the whole log stays readable through the API)."""
    truncated = run.output_truncated or len(stdout) > cap or len(stderr) > cap
    duration = None
    if run.started_at is not None and run.finished_at is not None:
        duration = round((run.finished_at - run.started_at).total_seconds(), 3)
    finished = run.finished_at or utcnow()
    return {
        "status": run.status.value,
        "returncode": run.exit_code,
        "stdout": _text(stdout[:cap]),
        "stderr": _text(stderr[:cap]),
        "completed_at": finished.isoformat(),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "run_id": run.id,
        "attempts": run.attempts,
        "duration_s": duration,
        "failure": (
            {"kind": run.failure.kind.value, "message": run.failure.message}
            if run.failure is not None
            else None
        ),
        "output_truncated": truncated,
    }


def invalid_result(error: McpexecError) -> dict[str, Any]:
    return {
        "status": "invalid",
        "error": {"code": error.code, "message": error.message},
        "completed_at": utcnow().isoformat(),
    }


def succeeded(run: Run) -> bool:
    return run.status == RunStatus.COMPLETED


def render(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode()
