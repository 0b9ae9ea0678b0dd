"""Inputs at the edges, against a real ``serve``: invalid Unicode, numbers and dates at their
limits, idempotency conflicts, oversized argv/env, HTTP edges (chunked bodies, unknown paths and
methods, a forged Host, slow clients)."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from mcpexec.models import DEFAULT_RETRY, ExecSpec
from mcpexec.store.base import NewRun
from mcpexec.store.sqlite import SqliteStore

from .conftest import Server, make_server

MAX_BODY = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def edge_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = make_server(
        tmp_path_factory.mktemp("edges"),
        workers=2,
        MCPEXEC_MAX_BODY_BYTES=str(MAX_BODY),
        MCPEXEC_HEADER_TIMEOUT_S="1",
        MCPEXEC_SANDBOX="none",
    )
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def http(edge_server: Server) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {edge_server.token}"}
    with httpx.Client(base_url=edge_server.url, headers=headers, timeout=30) as client:
        yield client


def _post_raw(http: httpx.Client, text: str, **headers: str) -> httpx.Response:
    """POST a body written as JSON text (so it can carry escapes json.dumps would not make)."""
    hdrs = {"Content-Type": "application/json", **headers}
    return http.post("/api/v1/runs", content=text.encode(), headers=hdrs)


def _field_of(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    return str(error["details"]["errors"][0]["field"])


# -- item 1: text that is not Unicode scalar values -----------------------------------------------
LONE = "\\ud800"  # the JSON escape of a lone surrogate


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"shell": "echo x", "labels": {"a": "%s"}}', "labels.a"),
        ('{"shell": "echo x", "labels": {"%s": "v"}}', "labels"),
        ('{"shell": "echo x", "env": {"A": "%s"}}', "env.A"),
        ('{"shell": "echo x", "env": {"%s": "v"}}', "env"),
        ('{"shell": "echo x", "inputs": {"f": "%s"}}', "inputs"),
        ('{"shell": "echo x", "inputs": {"f": {"content": "%s"}}}', "inputs"),
        ('{"shell": "echo %s"}', "shell"),
        ('{"command": ["echo", "%s"]}', "command.1"),
        ('{"script": {"language": "sh", "source": "echo %s"}}', "script.source"),
        ('{"shell": "echo x", "idempotency_key": "k%s"}', "idempotency_key"),
        ('{"shell": "echo x", "secrets": ["%s"]}', "secrets.0"),
    ],
)
def test_lone_surrogates_are_refused_naming_the_field(
    http: httpx.Client, body: str, field: str
) -> None:
    response = _post_raw(http, body % LONE)
    assert _field_of(response).startswith(field)
    # Nothing was stored: the listing still works.
    assert http.get("/api/v1/runs").status_code == 200


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused_naming_the_field(http: httpx.Client, constant: str) -> None:
    # Python's json.loads (FastAPI's parser) takes them; JSON has neither.
    body = '{"task": "t", "params": {"x": [1, CONSTANT]}}'.replace("CONSTANT", constant)
    response = _post_raw(http, body)
    assert _field_of(response) == "params"
    assert f"{constant} is not a JSON number" in response.json()["error"]["message"]


def test_a_surrogate_stored_before_the_check_does_not_break_reads(tmp_path: Path) -> None:
    """A run written by an older version with a lone surrogate in a label: list and get answer
    (the character comes back as U+FFFD), also for ``mcpexec runs``."""
    srv = make_server(tmp_path, workers=0)

    async def store_old_run() -> str:
        store = SqliteStore(srv.home / "mcpexec.db")
        await store.open()
        new = NewRun(
            id=uuid.uuid4().hex,
            tenant="default",
            spec=ExecSpec(shell="echo old"),
            retry=DEFAULT_RETRY,
            priority=0,
            labels={"a": "\ud800"},
            created_at=datetime.now(UTC),
        )
        run, _ = await store.enqueue(new)
        await store.close()
        return run.id

    run_id = asyncio.run(store_old_run())
    srv.start()
    try:
        with srv.client() as client:
            listed = client.list_runs()["runs"]
            assert [r["id"] for r in listed] == [run_id]
            assert listed[0]["labels"] == {"a": "\ufffd"}
            assert client.get(run_id)["labels"] == {"a": "\ufffd"}
        shown = srv.cli("runs")
        assert shown.returncode == 0, shown.stderr
        assert run_id in shown.stdout
    finally:
        srv.stop()


# -- item 4: numbers and dates at the edges ------------------------------------------------------
def _a_run(http: httpx.Client) -> str:
    response = http.post("/api/v1/runs", json={"shell": "echo edge"})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/logs?offset=9223372036854775807", "offset"),
        ("/logs?offset=9223372036854775808", "offset"),
        ("/logs?follow=true&offset=9223372036854775807", "offset"),
        ("/logs?offset=-1", "offset"),
    ],
)
def test_log_offsets_at_the_edge_are_422(http: httpx.Client, path: str, field: str) -> None:
    run_id = _a_run(http)
    assert _field_of(http.get(f"/api/v1/runs/{run_id}{path}")) == field


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("cursor=9223372036854775808", "cursor"),
        ("cursor=9223372036854775807", "cursor"),
        ("cursor=%C2%B2", "cursor"),  # a superscript two: str.isdigit says yes
        ("created_after=0001-01-01T00:00:00%2B01:00", "created_after"),
        ("created_before=9999-12-31T23:59:59-01:00", "created_before"),
    ],
)
def test_list_parameters_at_the_edge_are_422(http: httpx.Client, query: str, field: str) -> None:
    assert _field_of(http.get(f"/api/v1/runs?{query}")) == field


@pytest.mark.parametrize("run_at", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_run_at_overflowing_utc_is_422(http: httpx.Client, run_at: str) -> None:
    response = http.post("/api/v1/runs", json={"shell": "true", "run_at": run_at})
    assert _field_of(response) == "run_at"


# -- item 9: idempotency ---------------------------------------------------------------------------
def test_same_key_with_another_body_is_409(http: httpx.Client) -> None:
    key = uuid.uuid4().hex
    first = http.post("/api/v1/runs", json={"shell": "echo a"}, headers={"Idempotency-Key": key})
    assert first.status_code == 202
    # The same request spelled differently is a replay.
    again = http.post(
        "/api/v1/runs",
        json={"priority": "normal", "labels": {}, "shell": "echo a"},
        headers={"Idempotency-Key": key},
    )
    assert again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    other = http.post("/api/v1/runs", json={"shell": "echo b"}, headers={"Idempotency-Key": key})
    assert other.status_code == 409, other.text
    error = other.json()["error"]
    assert error["code"] == "idempotency_conflict"
    assert error["details"]["run_id"] == first.json()["id"]
    in_body = http.post("/api/v1/runs", json={"shell": "echo c", "idempotency_key": key})
    assert in_body.json()["error"]["code"] == "idempotency_conflict"


# -- item 10: NUL bytes and argv/env sizes ---------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"shell": "echo a\0b"}, "shell"),
        ({"script": {"language": "sh", "source": "echo a\0b"}}, "script.source"),
        ({"shell": "true", "env": {"BIG": "x" * (128 * 1024)}}, "env"),
        ({"command": ["echo", "é" * 70_000]}, "command"),
        ({"shell": "é" * 70_000}, "shell"),
    ],
)
def test_nul_and_oversized_arguments_are_422(
    http: httpx.Client, body: dict[str, Any], field: str
) -> None:
    assert _field_of(_post_raw(http, json.dumps(body, ensure_ascii=False))) == field


def test_argv_and_env_over_the_total_cap_are_422(http: httpx.Client) -> None:
    env = {f"V{i}": "x" * 100_000 for i in range(11)}
    response = http.post("/api/v1/runs", json={"shell": "true", "env": env})
    assert response.status_code == 422
    assert "at most 1048576" in response.json()["error"]["message"]
    big = http.post("/api/v1/runs", json={"shell": "true", "env": {"BIG": "x" * (128 * 1024)}})
    assert _field_of(big) == "env"
    assert "BIG" in big.json()["error"]["message"]


# -- item 11: HTTP edges ---------------------------------------------------------------------------
def test_chunked_body_over_the_cap_is_413(http: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"shell": "echo '
        for _ in range(MAX_BODY // 1024 + 2):
            yield b"x" * 1024
        yield b'"}'

    response = http.post(
        "/api/v1/runs", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "payload_too_large"


def test_unknown_api_paths_and_methods_answer_json(http: httpx.Client) -> None:
    missing = http.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong = http.put("/api/v1/runs")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"
    assert set(wrong.headers["Allow"].split(", ")) >= {"GET", "POST"}
    health = http.post("/health")
    assert health.status_code == 405
    assert "GET" in health.headers["Allow"]
    run_id = _a_run(http)
    patch = http.patch(f"/api/v1/runs/{run_id}")
    assert patch.status_code == 405
    assert set(patch.headers["Allow"].split(", ")) >= {"GET", "DELETE"}


def test_forged_host_does_not_reach_the_links(http: httpx.Client) -> None:
    response = http.post("/api/v1/runs", json={"shell": "true"}, headers={"Host": "evil.com"})
    assert response.status_code == 202
    body = response.json()
    assert "evil.com" not in json.dumps(body)
    assert body["url"] == f"/api/v1/runs/{body['id']}"
    listed = http.get("/api/v1/runs", headers={"Host": "evil.com"})
    assert "evil.com" not in listed.text


def test_public_url_is_the_base_of_links(tmp_path: Path) -> None:
    srv = make_server(tmp_path, workers=0, MCPEXEC_PUBLIC_URL="https://exec.example.com/")
    srv.start()
    try:
        with srv.client() as client:
            run = client.submit({"shell": "true"})
        assert run["url"] == f"https://exec.example.com/api/v1/runs/{run['id']}"
    finally:
        srv.stop()


def test_half_sent_request_is_closed_by_the_server(edge_server: Server) -> None:
    with socket.create_connection(("127.0.0.1", edge_server.port), timeout=30) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line: never ends
        try:
            data = sock.recv(4096)
        except TimeoutError:
            pytest.fail("the server held a half-sent request for 30 s")
        assert data == b""  # closed by the server (header timeout 1 s)


def test_silent_connection_is_closed_by_the_server(edge_server: Server) -> None:
    with socket.create_connection(("127.0.0.1", edge_server.port), timeout=30) as sock:
        try:
            data = sock.recv(4096)
        except TimeoutError:
            pytest.fail("the server held a silent connection for 30 s")
        assert data == b""


# -- new-user items: curl's form content type, invalid JSON ---------------------------------------
def test_json_body_without_a_json_content_type_is_accepted(http: httpx.Client) -> None:
    form = http.post(
        "/api/v1/runs",
        content=b'{"shell": "echo hi"}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 202, form.text
    bare = http.post("/api/v1/runs", content=b'{"shell": "echo hi"}')
    assert bare.status_code == 202, bare.text
    other = http.post(
        "/api/v1/runs", content=b"x", headers={"Content-Type": "multipart/form-data; boundary=x"}
    )
    assert other.status_code == 415
    assert other.json()["error"]["code"] == "unsupported_media_type"


def test_invalid_json_says_so(http: httpx.Client) -> None:
    response = _post_raw(http, '{"shell": ')
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["message"].startswith("body: request body is not valid JSON: ")
    assert error["details"]["errors"][0]["field"] == "body"


def test_dates_near_the_edge_that_fit_utc_are_accepted(http: httpx.Client) -> None:
    listed = http.get("/api/v1/runs", params={"created_after": "0001-01-01T00:51:00Z"})
    assert listed.status_code == 200, listed.text
    early = http.post("/api/v1/runs", json={"shell": "true", "run_at": "0001-01-01T00:51:00Z"})
    assert early.status_code == 202, early.text
