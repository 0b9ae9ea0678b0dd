"""The REST calls of tasks and schedules (issue 11), over a ``mcpexec.client.Client``."""

from __future__ import annotations

from typing import Any, cast

from mcpexec.client import Client, Json


class TasksApi:
    def __init__(self, client: Client) -> None:
        self.client = client

    def _json(self, method: str, path: str, **kwargs: Any) -> Json:
        return self.client._json(method, path, **kwargs)

    # -- tasks --------------------------------------------------------------------------------
    def define(self, name: str, text: str, fmt: str) -> Json:
        kind = "application/json" if fmt == "json" else "application/yaml"
        return self._json(
            "PUT", f"/api/v1/tasks/{name}", content=text.encode(), headers={"Content-Type": kind}
        )

    def get(self, name: str, version: int | None = None) -> Json:
        if version is None:
            return self._json("GET", f"/api/v1/tasks/{name}")
        return self._json("GET", f"/api/v1/tasks/{name}/versions/{version}")

    def tasks(self, archived: bool = False) -> list[Json]:
        found = self._json("GET", "/api/v1/tasks", params={"archived": archived})
        return cast(list[Json], found["tasks"])

    def versions(self, name: str) -> list[Json]:
        return cast(list[Json], self._json("GET", f"/api/v1/tasks/{name}/versions")["versions"])

    def diff(self, name: str, old: int, new: int) -> list[str]:
        found = self._json("GET", f"/api/v1/tasks/{name}/diff", params={"from": old, "to": new})
        return cast(list[str], found["diff"])

    def archive(self, name: str) -> Json:
        return self._json("POST", f"/api/v1/tasks/{name}/archive")

    # -- schedules ----------------------------------------------------------------------------
    def create_schedule(self, body: Json) -> Json:
        return self._json("POST", "/api/v1/schedules", json=body)

    def schedules(self) -> list[Json]:
        return cast(list[Json], self._json("GET", "/api/v1/schedules")["schedules"])

    def schedule(self, schedule_id: str) -> Json:
        return self._json("GET", f"/api/v1/schedules/{schedule_id}")

    def update_schedule(self, schedule_id: str, changes: Json) -> Json:
        return self._json("PATCH", f"/api/v1/schedules/{schedule_id}", json=changes)

    def delete_schedule(self, schedule_id: str) -> None:
        self.client._request("DELETE", f"/api/v1/schedules/{schedule_id}")

    def schedule_action(self, schedule_id: str, action: str) -> Json:
        """``pause``, ``resume`` or ``trigger`` (which answers with the run)."""
        return self._json("POST", f"/api/v1/schedules/{schedule_id}/{action}")

    def next_fires(self, schedule_id: str, n: int) -> Json:
        return self._json("GET", f"/api/v1/schedules/{schedule_id}/next", params={"n": n})

    def history(self, schedule_id: str, limit: int = 50) -> list[Json]:
        path = f"/api/v1/schedules/{schedule_id}/history"
        return cast(list[Json], self._json("GET", path, params={"limit": limit})["fires"])
