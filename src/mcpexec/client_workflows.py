"""The REST calls of workflows (issue 16), over a ``mcpexec.client.Client``."""

from __future__ import annotations

from typing import Any, cast

from mcpexec.client import Client, Json


class WorkflowsApi:
    def __init__(self, client: Client) -> None:
        self.client = client

    def _json(self, method: str, path: str, **kwargs: Any) -> Json:
        return self.client._json(method, path, **kwargs)

    def define(self, text: str, fmt: str) -> Json:
        kind = "application/json" if fmt == "json" else "application/yaml"
        return self._json(
            "POST", "/api/v1/workflows", content=text.encode(), headers={"Content-Type": kind}
        )

    def get(self, name: str) -> Json:
        return self._json("GET", f"/api/v1/workflows/{name}")

    def workflows(self) -> list[Json]:
        return cast(list[Json], self._json("GET", "/api/v1/workflows")["workflows"])

    def start(self, workflow: str, params: dict[str, Any]) -> Json:
        body = {"workflow": workflow, "params": params}
        return self._json("POST", "/api/v1/workflow-runs", json=body)

    def run(self, run_id: str) -> Json:
        return self._json("GET", f"/api/v1/workflow-runs/{run_id}")

    def runs(self, workflow: str | None = None, status: tuple[str, ...] = ()) -> list[Json]:
        params: dict[str, Any] = {"status": list(status)}
        if workflow:
            params["workflow"] = workflow
        found = self._json("GET", "/api/v1/workflow-runs", params=params)
        return cast(list[Json], found["workflow_runs"])

    def events(self, run_id: str, after: int = 0) -> list[Json]:
        found = self._json("GET", f"/api/v1/workflow-runs/{run_id}/events", params={"after": after})
        return cast(list[Json], found["events"])

    def act(self, run_id: str, action: str, step: str | None = None) -> Json:
        if step is None:
            return self._json("POST", f"/api/v1/workflow-runs/{run_id}/{action}")
        return self._json("POST", f"/api/v1/workflow-runs/{run_id}/{action}", json={"step": step})
