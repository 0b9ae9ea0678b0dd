"""A small typed Python client for the REST API (the CLI and the tests use it).

from mcpexec.client import Client
with Client.from_env() as c:
    run = c.submit({"shell": "echo hi"})
    done = c.wait(run["id"], timeout_s=30)

Requests go over the standard library's ``http.client`` (``mcpexec.http_call``): importing httpx
costs about 250 ms, most of a CLI command's start-up. Only ``follow`` (a long-lived stream,
where start-up does not matter) uses httpx and httpx-sse.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, cast

from mcpexec import config_file, paths
from mcpexec.errors import ConfigError, McpexecError, ServerUnavailable
from mcpexec.http_call import HttpConnection, Response, TransportFailure

Json = dict[str, Any]
DEFAULT_URL = "http://127.0.0.1:8002"
#: The most specs one batch submit holds (the server's ``models.MAX_BATCH``; the client does
#: not import pydantic).
MAX_BATCH = 1000
#: Ids per bulk status read: 200 ids of 32 characters keep the URL under 8 KiB, which every
#: proxy passes (the server takes up to 500).
IDS_PER_READ = 200


class ApiError(McpexecError):
    """The server refused the request."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(message, **details)
        self.status = status
        self.api_code = code
        #: Where the client looked for a token, when it sent none and got a 401.
        self.token_hint = ""

    def __str__(self) -> str:
        return f"{self.api_code}: {self.message}"


class QuotaExceededError(ApiError):
    """429 ``quota_exceeded``: the tenant's queue is full; ``retry_after`` (seconds) says when
    to try again and ``limit`` which quota it was."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(status, code, message, details)
        retry = details.get("retry_after_s")
        self.retry_after: float | None = float(retry) if isinstance(retry, int | float) else None
        self.limit = str(details.get("limit", ""))


class Client:
    def __init__(
        self, url: str, token: str | None, timeout_s: float = 30.0, token_hint: str = ""
    ) -> None:
        self.url = url.rstrip("/")
        self.has_token = bool(token)
        #: Where a token was looked for (said when the server refuses for want of one).
        self.token_hint = token_hint
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = HttpConnection(self.url, self._headers, timeout_s)

    @classmethod
    def from_env(cls, url: str | None = None, token: str | None = None) -> Client:
        """The server: ``url``, ``MCPEXEC_URL``, ``url`` in the config file, the URL ``serve``
        recorded in ``$MCPEXEC_HOME/url``, else http://127.0.0.1:8002. The token: ``token``,
        ``MCPEXEC_TOKEN``, the config file, or ``$MCPEXEC_HOME/token`` that ``serve`` writes.

        Reads files and the environment only (no pydantic): client commands start fast."""
        config = _config_keys()
        home = Path(config["home"]) if "home" in config else paths.home()
        url = url or os.environ.get("MCPEXEC_URL") or config.get("url")
        url = url or _read(home / "url") or DEFAULT_URL
        token = token or os.environ.get("MCPEXEC_TOKEN") or config.get("token")
        token = token or _read(home / "token")
        hint = f"looked in --token, MCPEXEC_TOKEN, {paths.config_file()} and {home / 'token'}"
        return cls(url, token, token_hint=hint)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing -----------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except TransportFailure as exc:
            raise ServerUnavailable(
                f"no mcpexec server answers at {self.url} ({exc}); "
                "start one with 'mcpexec serve' or set MCPEXEC_URL"
            ) from exc
        if response.status_code >= 400:
            raise self._error(response)
        return response

    def _error(self, response: Response) -> ApiError:
        error = _api_error(response)
        if error.status == 401 and not self.has_token:
            error.token_hint = self.token_hint
        return error

    def _json(self, method: str, path: str, **kwargs: Any) -> Json:
        return cast(Json, self._request(method, path, **kwargs).json())

    # -- runs ---------------------------------------------------------------------------------
    def submit(self, spec: Json, idempotency_key: str | None = None) -> Json:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._json("POST", "/api/v1/runs", json=spec, headers=headers)

    def submit_batch(self, specs: Sequence[Json], *, all_or_nothing: bool = False) -> Json:
        """One ``POST /api/v1/runs:batch`` of at most ``MAX_BATCH`` specs (each the body of
        ``submit``), stored in one transaction: ``{"results": [...], "created", "replayed",
        "failed"}``, a result per spec in order (``status`` 202 with ``run``, or ``error``).
        ``all_or_nothing`` stores nothing if any spec fails (``ApiError`` 409
        ``batch_refused``, ``details["errors"]`` by index)."""
        body = {"runs": list(specs), "all_or_nothing": all_or_nothing}
        return self._json("POST", "/api/v1/runs:batch", json=body)

    def submit_many(self, specs: Iterable[Json], batch_size: int = MAX_BATCH) -> Json:
        """Any number of specs, in batches of ``batch_size`` (one transaction each): the
        results of every batch together, ``index`` counted over all of ``specs``. A batch
        refused as a whole (401, 403) raises ``ApiError``; the batches before it are stored."""
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH}")
        total: Json = {"results": [], "created": 0, "replayed": 0, "failed": 0}
        items = iter(specs)
        while chunk := list(itertools.islice(items, batch_size)):
            answer = self.submit_batch(chunk)
            offset = len(total["results"])
            total["results"] += [{**r, "index": r["index"] + offset} for r in answer["results"]]
            for key in ("created", "replayed", "failed"):
                total[key] += answer[key]
        return total

    def statuses(
        self, run_ids: Iterable[str], fields: Sequence[str] = ("status", "exit_code")
    ) -> dict[str, Json]:
        """The status (and other ``fields``) of many runs in few requests (``GET
        /api/v1/runs?ids=…&fields=…``, ``IDS_PER_READ`` ids each): ``{id: {"id", ...}}`` for
        the runs this token may see; an unknown id, or another tenant's, is simply absent."""
        wanted = list(dict.fromkeys(run_ids))
        found: dict[str, Json] = {}
        for start in range(0, len(wanted), IDS_PER_READ):
            ids = ",".join(wanted[start : start + IDS_PER_READ])
            params = {"ids": ids, "fields": ",".join(fields)}
            page = self._json("GET", "/api/v1/runs", params=params)
            found |= {run["id"]: run for run in page["runs"]}
        return found

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
        """Yield ``("output", {stream, offset, data})`` events live, then ``("end", run)``.
        Raises ``ServerUnavailable`` when the server shuts down (its ``shutdown`` event) or the
        stream breaks before the end: the run goes on, and can be followed again."""
        import httpx
        from httpx_sse import connect_sse

        params: dict[str, Any] = {"follow": "true", "offset": offset}
        if stream:
            params["stream"] = stream
        try:
            with (
                # The server pings every 15 s: a minute of silence is a dead connection.
                httpx.Client(base_url=self.url, headers=self._headers, timeout=60.0) as http,
                connect_sse(http, "GET", f"/api/v1/runs/{run_id}/logs", params=params) as source,
            ):
                if source.response.status_code >= 400:
                    source.response.read()
                    raise self._error(
                        Response(source.response.status_code, {}, source.response.content)
                    )
                for event in source.iter_sse():
                    if event.event in ("output", "end"):
                        yield event.event, json.loads(event.data)
                    if event.event == "end":
                        return
                    if event.event == "shutdown":
                        raise ServerUnavailable(
                            f"the server at {self.url} is shutting down; run {run_id} goes on "
                            f"when it is back: follow it again with 'mcpexec logs -f {run_id}'"
                        )
        except httpx.TransportError as exc:
            raise ServerUnavailable(f"lost the connection to {self.url}: {exc}") from exc
        raise ServerUnavailable(  # the stream ended without its closing event
            f"lost the connection to {self.url} before run {run_id} ended; "
            f"follow it again with 'mcpexec logs -f {run_id}'"
        )

    # -- alerts and the event log (issue 17) ------------------------------------------------------
    def alerts(self, state: str | None = None) -> Json:
        """``{alerts, firing}``: the alert states, firing first."""
        params = {} if state is None else {"state": state}
        return self._json("GET", "/api/v1/alerts", params=params)

    def events_page(self, after: int = 0, limit: int = 100, **filters: str | None) -> Json:
        """One page of kept events after ``after``: ``{events, next_after}`` (no waiting)."""
        params: dict[str, Any] = {"format": "json", "after": after, "limit": limit}
        params |= {k: v for k, v in filters.items() if v is not None}
        return self._json("GET", "/api/v1/events", params=params)

    def stream_events(
        self,
        after: int | None = None,
        *,
        timeout: float | None = None,
        limit: int | None = None,
        **filters: str | None,
    ) -> Iterator[Json]:
        """Yield events live as the server sends them, after ``after`` (``None``: from now on,
        else sent as ``Last-Event-ID``). Ends when the server ends the stream (``timeout``,
        ``limit``); raises ``ServerUnavailable`` when the connection breaks or the server shuts
        down (``follow_events`` resumes from the last id)."""
        for kind, _, data in self._event_stream(after, timeout, limit, filters):
            if kind != "open":
                yield data

    def _event_stream(
        self,
        after: int | None,
        timeout: float | None,
        limit: int | None,
        filters: Mapping[str, str | None],
    ) -> Iterator[tuple[str, int, Json]]:
        """``(kind, id, data)`` of each message; the first is ``open`` with the id the stream
        starts after (what a reconnect sends when no event came yet)."""
        import httpx
        from httpx_sse import connect_sse

        params: dict[str, Any] = {k: v for k, v in filters.items() if v is not None}
        if timeout is not None:
            params["timeout"] = timeout
        if limit is not None:
            params["limit"] = limit
        headers = dict(self._headers)
        if after is not None:
            headers["Last-Event-ID"] = str(after)
        try:
            with (
                # The server pings every 15 s: a minute of silence is a dead connection.
                httpx.Client(base_url=self.url, headers=headers, timeout=60.0) as http,
                connect_sse(http, "GET", "/api/v1/events", params=params) as source,
            ):
                if source.response.status_code >= 400:
                    source.response.read()
                    raise self._error(
                        Response(source.response.status_code, {}, source.response.content)
                    )
                for event in source.iter_sse():
                    if event.event == "shutdown":
                        raise ServerUnavailable(f"the server at {self.url} is shutting down")
                    if event.event == "error":
                        error = json.loads(event.data)
                        raise ApiError(410, error["code"], error["message"], error["details"])
                    if event.id and event.data:
                        yield event.event, int(event.id), cast(Json, json.loads(event.data))
        except httpx.TransportError as exc:
            raise ServerUnavailable(f"lost the connection to {self.url}: {exc}") from exc

    def follow_events(
        self,
        after: int | None = None,
        *,
        retry_s: tuple[float, float] = (0.2, 5.0),
        on_reconnect: Callable[[int | None], None] | None = None,
        filters: Mapping[str, str | None] | None = None,
    ) -> Iterator[Json]:
        """Yield events for ever, reconnecting after a lost connection or a server restart
        with ``Last-Event-ID`` of the last event received: none skipped, none twice."""
        import time

        delay = retry_s[0]
        last = after
        while True:
            try:
                for kind, event_id, data in self._event_stream(last, None, None, filters or {}):
                    last = event_id
                    if kind != "open":
                        delay = retry_s[0]
                        yield data
            except ServerUnavailable:
                if on_reconnect is not None:
                    on_reconnect(last)
                time.sleep(delay)
                delay = min(delay * 2, retry_s[1])

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

    # -- tenants, tokens, audit (issue 10) ------------------------------------------------------
    def create_tenant(
        self,
        tenant: str,
        max_concurrent: int | None = None,
        max_queued: int | None = None,
        *,
        max_runtime_s: int | None = None,
        max_limits: Mapping[str, int] | None = None,
        default_limits: Mapping[str, int] | None = None,
    ) -> Json:
        """Create ``tenant``; ``max_limits``/``default_limits`` map ``memory_mb``, ``cpu_s``,
        ``pids``, ``disk_mb`` to the tenant's maximum and default."""
        body = {
            "id": tenant,
            **_quota_body(max_concurrent, max_queued, max_runtime_s, max_limits, default_limits),
        }
        return self._json("POST", "/api/v1/tenants", json=body)

    def tenants(self) -> list[Json]:
        return cast(list[Json], self._json("GET", "/api/v1/tenants")["tenants"])

    def quota(self, tenant: str | None = None) -> Json:
        """The tenant's limits and load (``None``: the token's own tenant)."""
        if tenant is None:
            return self._json("GET", "/api/v1/quota")
        return self._json("GET", f"/api/v1/tenants/{tenant}")

    def set_quota(
        self,
        tenant: str,
        max_concurrent: int | None = None,
        max_queued: int | None = None,
        *,
        max_runtime_s: int | None = None,
        max_limits: Mapping[str, int] | None = None,
        default_limits: Mapping[str, int] | None = None,
    ) -> Json:
        """Replace every quota of ``tenant`` (an omitted one: the server's default, none)."""
        body = _quota_body(max_concurrent, max_queued, max_runtime_s, max_limits, default_limits)
        return self._json("PUT", f"/api/v1/tenants/{tenant}", json=body)

    def create_token(
        self,
        name: str,
        role: str = "submitter",
        tenant: str | None = None,
        expires_in_s: int | None = None,
        kind: str = "service",
    ) -> Json:
        """A new token: the answer's ``token`` is its secret, shown this once."""
        body: Json = {"name": name, "role": role, "kind": kind}
        if tenant is not None:
            body["tenant"] = tenant
        if expires_in_s is not None:
            body["expires_in_s"] = expires_in_s
        return self._json("POST", "/api/v1/tokens", json=body)

    def tokens(self, tenant: str | None = None) -> list[Json]:
        params = {"tenant": tenant} if tenant else {}
        return cast(list[Json], self._json("GET", "/api/v1/tokens", params=params)["tokens"])

    def revoke_token(self, token_id: str) -> Json:
        return self._json("DELETE", f"/api/v1/tokens/{token_id}")

    def audit(self, tenant: str | None = None, limit: int = 100) -> list[Json]:
        params: Json = {"limit": limit}
        if tenant:
            params["tenant"] = tenant
        return cast(list[Json], self._json("GET", "/api/v1/audit", params=params)["entries"])


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _config_keys() -> dict[str, str]:
    """``url``, ``token`` and ``home`` from the config file, if it has them (strings only; the
    server validates the rest of the file when it starts)."""
    path = paths.config_file()
    try:
        data = config_file.parse(path, path.read_text())
        found = {k: v for k in ("url", "token", "home") if isinstance(v := data.get(k), str)}
        return {k: config_file.substitute(v, path, k) for k, v in found.items()}
    except (OSError, ConfigError):
        return {}


def _api_error(response: Response) -> ApiError:
    try:
        error = response.json()["error"]
        kind = QuotaExceededError if error["code"] == "quota_exceeded" else ApiError
        return kind(response.status_code, error["code"], error["message"], error["details"])
    except (ValueError, KeyError, TypeError):
        return ApiError(response.status_code, "http_error", response.text[:200], {})


def _quota_body(
    max_concurrent: int | None,
    max_queued: int | None,
    max_runtime_s: int | None,
    max_limits: Mapping[str, int] | None,
    default_limits: Mapping[str, int] | None,
) -> Json:
    return {
        "max_concurrent": max_concurrent,
        "max_queued": max_queued,
        "max_runtime_s": max_runtime_s,
        "max_limits": dict(max_limits or {}),
        "default_limits": dict(default_limits or {}),
    }
