"""How domain objects look on the wire (REST; the MCP server reuses these views)."""

from __future__ import annotations

from typing import Any

from mcpexec.models import Artifact, Attempt, Run


def run_view(run: Run, base_url: str = "") -> dict[str, Any]:
    """A run as the API returns it, with links to its sub-resources."""
    data = run.model_dump(mode="json", exclude={"seq"})
    url = f"{base_url}/api/v1/runs/{run.id}"
    data["kind"] = run.spec.kind
    data["max_attempts"] = run.retry.max_attempts
    data["url"] = url
    data["logs_url"] = f"{url}/logs"
    data["cancel_url"] = url
    data["artifacts_url"] = f"{url}/artifacts"
    return data


def attempt_view(attempt: Attempt) -> dict[str, Any]:
    data = attempt.model_dump(mode="json")
    data["duration_s"] = attempt.duration_s
    return data


def artifact_view(artifact: Artifact, base_url: str = "") -> dict[str, Any]:
    data = artifact.model_dump(mode="json")
    data["url"] = f"{base_url}/api/v1/runs/{artifact.run_id}/artifacts/{artifact.name}"
    return data
