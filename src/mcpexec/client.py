"""A small typed Python client for the REST API (the CLI and the tests use it).

from mcpexec.client import Client
with Client.from_env() as c:
    run = c.submit({"shell": "echo hi"})
    done = c.wait(run["id"], timeout_s=30)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import TracebackType
from typing import Any, BinaryIO, cast

import httpx
from httpx_sse import connect_sse

from mcpexec.errors import McpexecError, ServerUnavailable
from mcpexec.settings import load_settings

Json = dict[str, Any]


class ApiError(McpexecError):
    """The server refused the request."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(message, **details)
        self.status = status
        self.api_code = code

    def __str__(self) -> str:
        return f"{self.api_code}: {self.message}"


class Client:
    def __init__(self, url: str, token: str | None, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    @classmethod
    def from_env(cls, url: str | None = None, token: str | None = None) -> Client:
        """URL and token from arguments, ``MCPEXEC_URL``/``MCPEXEC_TOKEN``, the config file, or
        the token file that ``serve`` writes into ``$MCPEXEC_HOME``."""
        settings = load_settings(url=url, token=token)
        found = settings.token
        if found is None and settings.token_path.is_file():
            found = settings.token_path.read_text().strip() or None
        return cls(settings.url, found)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing -----------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerUnavailable(
                f"no mcpexec server answers at {self.url} ({exc.__class__.__name__}); "
                "start one with 'mcpexec serve' or set MCPEXEC_URL"
            ) from exc
        if response.status_code >= 400:
            raise _api_error(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Json:
        return cast(Json, self._request(method, path, **kwargs).json())

    # -- runs ---------------------------------------------------------------------------------
    def submit(self, spec: Json, idempotency_key: str | None = None) -> Json:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._json("POST", "/api/v1/runs", json=spec, headers=headers)

    def get(self, run_id: str) -> Json:
        return self._json("GET", f"/api/v1/runs/{run_id}")

    def wait(self, run_id: str, timeout_s: float = 60.0) -> Json:
        """Long-poll until the run is terminal or ``timeout_s`` passed (re-polls past 300 s)."""
        remaining = timeout_s
        while True:
            step = min(remaining, 300.0)
            run = self._json(
                "GET", f"/api/v1/runs/{run_id}", params={"wait": step}, timeout=step + 30
            )
            remaining -= step
            if run["status"] in ("completed", "failed", "cancelled") or remaining <= 0:
                return run

    def list_runs(self, **filters: Any) -> Json:
        params = {k: v for k, v in filters.items() if v is not None}
        return self._json("GET", "/api/v1/runs", params=params)

    def cancel(self, run_id: str) -> Json:
        return self._json("DELETE", f"/api/v1/runs/{run_id}")

    def rerun(self, run_id: str) -> Json:
        return self._json("POST", f"/api/v1/runs/{run_id}/rerun")

    def attempts(self, run_id: str) -> list[Json]:
        return cast(list[Json], self._json("GET", f"/api/v1/runs/{run_id}/attempts")["attempts"])

    def logs(
        self, run_id: str, stream: str = "stdout", offset: int = 0, limit: int = 1 << 20
    ) -> Json:
        params = {"stream": stream, "offset": offset, "limit": limit}
        return self._json("GET", f"/api/v1/runs/{run_id}/logs", params=params)

    def follow(
        self, run_id: str, stream: str | None = None, offset: int = 0
    ) -> Iterator[tuple[str, Json]]:
        """Yield ``("output", {stream, offset, data})`` events live, then ``("end", run)``."""
        params: dict[str, Any] = {"follow": "true", "offset": offset}
        if stream:
            params["stream"] = stream
        try:
            with connect_sse(
                self._http, "GET", f"/api/v1/runs/{run_id}/logs", params=params, timeout=None
            ) as source:
                if source.response.status_code >= 400:
                    source.response.read()
                    raise _api_error(source.response)
                for event in source.iter_sse():
                    if event.event in ("output", "end"):
                        yield event.event, json.loads(event.data)
                    if event.event == "end":
                        return
        except httpx.TransportError as exc:
            raise ServerUnavailable(f"lost the connection to {self.url}: {exc}") from exc

    def artifacts(self, run_id: str) -> list[Json]:
        return cast(list[Json], self._json("GET", f"/api/v1/runs/{run_id}/artifacts")["artifacts"])

    def download(self, run_id: str, name: str, out: BinaryIO) -> int:
        response = self._request("GET", f"/api/v1/runs/{run_id}/artifacts/{name}")
        out.write(response.content)
        return len(response.content)

    def health(self) -> Json:
        return self._json("GET", "/health")

    def workers(self) -> list[Json]:
        return cast(list[Json], self._json("GET", "/api/v1/workers")["workers"])


def _api_error(response: httpx.Response) -> ApiError:
    try:
        error = response.json()["error"]
        return ApiError(response.status_code, error["code"], error["message"], error["details"])
    except (ValueError, KeyError, TypeError):
        return ApiError(response.status_code, "http_error", response.text[:200], {})
