"""The batch submit (``POST /api/v1/runs:batch``) and the bulk status read (``GET
/api/v1/runs?ids=…&fields=…``) over a real ``serve`` on a real SQLite file: per-item results
and errors, idempotency, quotas, the ACL, all-or-nothing, the CLI (issue 12)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mcpexec.client import ApiError, Client

from .conftest import Server, make_server


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = make_server(tmp_path_factory.mktemp("batch"), workers=2, MCPEXEC_SANDBOX="none")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def client(srv: Server) -> Iterator[Client]:
    with srv.client() as c:
        yield c


def _post(srv: Server, body: object, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token or srv.token}"}
    return httpx.post(f"{srv.url}/api/v1/runs:batch", json=body, headers=headers, timeout=60)


def _marked(client: Client, marker: str) -> list[dict[str, object]]:
    runs: list[dict[str, object]] = client.list_runs(label=[f"m={marker}"], limit=500)["runs"]
    return runs


def test_a_batch_answers_per_item_and_stores_every_valid_run(srv: Server, client: Client) -> None:
    marker = uuid.uuid4().hex
    labels = {"m": marker}
    key = f"k-{marker}"
    specs = [
        {"shell": "echo one", "labels": labels},
        {"shell": "echo two", "labels": labels, "idempotency_key": key},
        {"shell": "echo x", "command": ["echo"], "labels": labels},  # two kinds: invalid
        {"shell": "echo three", "labels": {**labels, "mcp/task": "x"}},  # a reserved label
        {"shell": "echo two", "labels": labels, "idempotency_key": key},  # replays item 1
        {"shell": "echo other", "labels": labels, "idempotency_key": key},  # same key, other body
        {"task": f"no-such-task-{marker}", "labels": labels},
        {"shell": "exit 3", "labels": labels},
    ]
    response = _post(srv, {"runs": specs})
    assert response.status_code == 202, response.text
    body = response.json()
    results = body["results"]
    assert [r["index"] for r in results] == list(range(len(specs)))
    assert [r["status"] for r in results] == [202, 202, 422, 422, 202, 409, 404, 202]
    assert (body["created"], body["replayed"], body["failed"]) == (3, 1, 4)
    assert results[2]["error"]["code"] == "invalid_request"
    assert results[2]["error"]["details"]["errors"]
    assert results[3]["error"]["code"] == "invalid_request"
    assert "mcp/" in results[3]["error"]["message"]
    assert results[5]["error"]["code"] == "idempotency_conflict"
    assert results[6]["error"]["code"] == "task_not_found"
    assert [results[i]["created"] for i in (0, 1, 4, 7)] == [True, True, False, True]
    assert results[4]["run"]["id"] == results[1]["run"]["id"]
    ids = [results[i]["run"]["id"] for i in (0, 1, 7)]
    brief = results[0]["run"]
    assert brief["url"].endswith(f"/api/v1/runs/{ids[0]}")
    assert brief["logs_url"] == brief["url"] + "/logs"
    assert (brief["status"], brief["idempotency_key"], brief["task"]) == ("pending", None, None)
    assert results[1]["run"]["idempotency_key"] == key
    # exactly the valid runs were stored, and they run like any other
    assert sorted(str(r["id"]) for r in _marked(client, marker)) == sorted(ids)
    done = [client.wait(run_id, timeout_s=60) for run_id in ids]
    assert [(d["status"], d["exit_code"]) for d in done] == [
        ("completed", 0),
        ("completed", 0),
        ("failed", 3),
    ]
    assert client.logs(ids[0])["data"] == "one\n"
    events = client.events_page(limit=1000, type="run.submitted")["events"]
    assert {e["subject"] for e in events} >= set(ids)


def test_all_or_nothing_stores_nothing_when_one_item_fails(srv: Server, client: Client) -> None:
    marker = uuid.uuid4().hex
    good = {"shell": "echo ok", "labels": {"m": marker}}
    bad = {"shell": "echo bad", "labels": {"m": marker}, "timeout_s": -1}
    response = _post(srv, {"runs": [good, good, bad], "all_or_nothing": True})
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "batch_refused"
    assert [e["index"] for e in error["details"]["errors"]] == [2]
    assert error["details"]["errors"][0]["code"] == "invalid_request"
    assert _marked(client, marker) == []
    # the same batch without the bad item goes in whole, through the client
    answer = client.submit_batch([good, good], all_or_nothing=True)
    assert (answer["created"], answer["failed"]) == (2, 0)
    with pytest.raises(ApiError) as refused:
        client.submit_batch([good, bad], all_or_nothing=True)
    assert (refused.value.status, refused.value.api_code) == (409, "batch_refused")
    assert len(_marked(client, marker)) == 2


def test_over_a_thousand_runs_is_refused_with_its_own_code(srv: Server) -> None:
    response = _post(srv, {"runs": [{"shell": "true"}] * 1001})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "batch_too_large"
    assert error["details"]["max_items"] == 1000
    assert error["details"]["errors"][0]["field"] == "runs"
    schema = httpx.get(f"{srv.url}/openapi.json").json()
    batch = schema["components"]["schemas"]["BatchRequest"]
    assert batch["properties"]["runs"]["maxItems"] == 1000
    # the shape of the batch itself is still validated as a whole
    assert _post(srv, {"runs": "nope"}).status_code == 422
    assert _post(srv, {"runs": [1, 2]}).status_code == 422
    assert _post(srv, {"runs": [], "extra": 1}).status_code == 422
    empty = _post(srv, {"runs": []})
    assert empty.status_code == 202
    assert empty.json() == {"results": [], "created": 0, "replayed": 0, "failed": 0}


def test_each_item_meets_the_queue_quota_and_the_batch_the_acl(tmp_path: Path) -> None:
    server = make_server(tmp_path, workers=0, MCPEXEC_SANDBOX="none")
    server.start()
    try:
        with server.client() as admin:
            admin.create_tenant("small", max_queued=3)
            admin.create_tenant("other")
            submitter = admin.create_token("s", role="submitter", tenant="small")["token"]
            viewer = admin.create_token("v", role="viewer", tenant="small")["token"]
            other = admin.create_token("o", role="submitter", tenant="other")["token"]
            response = _post(server, {"runs": [{"shell": "true"}] * 5}, token=submitter)
            assert response.status_code == 202, response.text
            results = response.json()["results"]
            assert [r["status"] for r in results] == [202, 202, 202, 429, 429]
            assert results[3]["error"]["code"] == "quota_exceeded"
            assert results[3]["error"]["details"]["limit"] == "max_queued"
            forbidden = _post(server, {"runs": [{"shell": "true"}]}, token=viewer)
            assert forbidden.status_code == 403
            assert forbidden.json()["error"]["code"] == "forbidden"
            ids = [r["run"]["id"] for r in results[:3]]
            # the bulk read: the owner sees its runs, another tenant sees none of them
            with Client(server.url, submitter) as mine:
                found = mine.statuses([*ids, "no-such-run"])
                assert sorted(found) == sorted(ids)
                pending = {"status": "pending", "exit_code": None}
                assert all(v == {"id": k, **pending} for k, v in found.items())
            with Client(server.url, other) as theirs:
                assert theirs.statuses(ids) == {}
                page = theirs.list_runs(ids=",".join(ids))
                assert page == {"runs": [], "next_cursor": None}
            assert sorted(admin.statuses(ids)) == sorted(ids)
    finally:
        server.stop()


def test_the_bulk_read_projects_fields_and_takes_every_id(srv: Server, client: Client) -> None:
    marker = uuid.uuid4().hex
    answer = client.submit_batch([{"shell": "exit 5", "labels": {"m": marker}}] * 120)
    ids = [r["run"]["id"] for r in answer["results"]]
    for run_id in ids:
        client.wait(run_id, timeout_s=60)
    page = client.list_runs(ids=",".join(ids), fields="status,exit_code,url")
    assert page["next_cursor"] is None
    assert sorted(r["id"] for r in page["runs"]) == sorted(ids)  # 120 > the default limit 50
    first = page["runs"][0]
    assert set(first) == {"id", "status", "exit_code", "url"}
    assert (first["status"], first["exit_code"]) == ("failed", 5)
    assert first["url"] == f"/api/v1/runs/{first['id']}"
    found = client.statuses([*ids, *ids[:10]], fields=("status",))
    assert set(found) == set(ids)
    assert {tuple(sorted(v)) for v in found.values()} == {("id", "status")}
    # other filters still apply on top of the ids
    running = client.list_runs(ids=",".join(ids), status=["running"])
    assert running["runs"] == []
    headers = {"Authorization": f"Bearer {srv.token}"}
    url = f"{srv.url}/api/v1/runs"
    assert httpx.get(url, params={"fields": "nope"}, headers=headers).status_code == 422
    too_many = ",".join(f"r{i}" for i in range(501))
    assert httpx.get(url, params={"ids": too_many}, headers=headers).status_code == 422


def test_the_cli_submits_a_jsonl_file_and_reads_statuses(srv: Server, tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    lines = [
        json.dumps({"shell": "echo a", "labels": {"m": marker}}),
        "",
        json.dumps({"shell": "echo b", "command": ["x"], "labels": {"m": marker}}),
        json.dumps({"command": ["true"], "labels": {"m": marker}}),
    ]
    path = tmp_path / "runs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    done = srv.cli("batch", str(path), "--batch-size", "2")
    assert done.returncode == 1, done.stderr  # one run was refused
    rows = [line.split("\t") for line in done.stdout.splitlines()]
    assert [(r[0], r[1]) for r in rows] == [("0", "created"), ("1", "error"), ("2", "created")]
    assert rows[1][2].startswith("invalid_request: ")
    assert done.stderr.strip() == "2 created, 0 replayed, 1 failed"
    assert "Traceback" not in done.stderr
    ids = [rows[0][2], rows[2][2]]
    status = srv.cli("status", *ids, "nope-nope")
    assert status.returncode == 1
    table = status.stdout.splitlines()
    assert table[0].split() == ["ID", "STATUS", "EXIT"]
    assert table[-1].split() == ["nope-nope", "not_found"]
    assert {line.split()[0] for line in table[1:3]} == set(ids)
    as_json = srv.cli("status", ids[0], "--json")
    assert json.loads(as_json.stdout)["id"] == ids[0]
    # a line that is not JSON stops it all, in one line, before anything is sent
    path.write_text(lines[0] + "\n{oops\n")
    broken = srv.cli("batch", str(path))
    assert broken.returncode == 1
    assert broken.stderr.startswith(f"mcpexec: {path} line 2: not JSON")
    assert len(broken.stderr.strip().splitlines()) == 1
    with srv.client() as client:
        assert len(_marked(client, marker)) == 2
        # all or nothing: one refused line stores none of them, said in one line
        path.write_text(lines[0] + "\n" + lines[2] + "\n")
        refused = srv.cli("batch", "--all-or-nothing", str(path))
        assert refused.returncode == 1
        assert refused.stderr.startswith("mcpexec: batch_refused: nothing was stored")
        assert len(refused.stderr.strip().splitlines()) == 1
        assert len(_marked(client, marker)) == 2


def test_a_task_run_in_a_batch_is_checked_and_pinned_like_a_single_one(
    srv: Server, client: Client
) -> None:
    marker = uuid.uuid4().hex
    name = f"greet-{marker[:8]}"
    body = {
        "shell": "echo hello $MCPEXEC_PARAM_WHO",
        "params": {"type": "object", "properties": {"who": {"type": "string"}}},
    }
    client._json("PUT", f"/api/v1/tasks/{name}", json=body)
    labels = {"m": marker}
    answer = client.submit_batch(
        [
            {"task": name, "params": {"who": "batch"}, "labels": labels},
            {"task": name, "params": {"who": 7}, "labels": labels},  # not a string: 422
            {"task": name, "params": {"who": "x"}, "shell": "echo no", "labels": labels},
        ]
    )
    results = answer["results"]
    assert [r["status"] for r in results] == [202, 422, 422]
    run = results[0]["run"]
    assert (run["task"], run["task_version"]) == (name, 1)
    done = client.wait(run["id"], timeout_s=60)
    assert (done["status"], done["params"]) == ("completed", {"who": "batch"})
    assert client.logs(run["id"])["data"] == "hello batch\n"
    assert [r["id"] for r in _marked(client, marker)] == [run["id"]]


@pytest.mark.slow
def test_a_batch_on_postgresql_end_to_end(tmp_path: Path) -> None:
    from pg_server import fresh_schema

    with fresh_schema() as url:
        server = make_server(tmp_path, workers=2, MCPEXEC_SANDBOX="none", MCPEXEC_DATABASE_URL=url)
        server.start()
        try:
            with server.client() as client:
                specs = [{"shell": f"echo {i}", "idempotency_key": f"k{i}"} for i in range(50)]
                answer = client.submit_batch([*specs, {"shell": 1}, specs[0]])
                assert (answer["created"], answer["replayed"], answer["failed"]) == (50, 1, 1)
                assert answer["results"][50]["error"]["code"] == "invalid_request"
                ids = [r["run"]["id"] for r in answer["results"][:50]]
                refused = _post(server, {"runs": [{"shell": "true"}, {}], "all_or_nothing": True})
                assert refused.status_code == 409
                for run_id in ids:
                    client.wait(run_id, timeout_s=60)
                found = client.statuses([*ids, "nope"])
                assert sorted(found) == sorted(ids)
                assert {(v["status"], v["exit_code"]) for v in found.values()} == {("completed", 0)}
                assert client.logs(ids[7])["data"] == "7\n"
                assert client._json("GET", "/api/v1/stats")["runs"]["completed"] == 50
        finally:
            server.stop()
