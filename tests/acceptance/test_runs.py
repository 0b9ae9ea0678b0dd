"""The engine end to end: a real ``serve`` process, the REST API and the typed client."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from mcpexec.client import ApiError, Client

from .conftest import Server, rss_kib, sleeper, wait_until_gone


def test_us1_echo_completes_with_output_and_logs(client: Client) -> None:
    """Seed 000, user story 1: submit a task that echoes a known value."""
    run = client.submit({"shell": "echo known-value-7"})
    assert run["status"] == "pending"
    assert run["url"].endswith(f"/api/v1/runs/{run['id']}")
    done = client.wait(run["id"], timeout_s=30)
    assert done["status"] == "completed"
    assert done["exit_code"] == 0
    assert done["attempts"] == 1
    assert done["started_at"] is not None
    assert done["finished_at"] is not None
    assert done["tenant"] == "default"
    logs = client.logs(run["id"])
    assert logs["data"] == "known-value-7\n"
    assert logs["complete"] is True


def test_us3_deterministic_failure_records_three_attempts(client: Client) -> None:
    """Seed 000, user story 3: a retry policy of 3 attempts on a task that always fails."""
    spec = {"shell": "echo try; exit 2", "retry": {"max_attempts": 3, "delay_s": 0}}
    run = client.submit(spec)
    done = client.wait(run["id"], timeout_s=30)
    assert done["status"] == "failed"
    assert done["failure"]["kind"] == "exit_code"
    assert done["exit_code"] == 2
    attempts = client.attempts(run["id"])
    assert [a["number"] for a in attempts] == [1, 2, 3]
    assert all(a["status"] == "failed" for a in attempts)
    assert all(a["exit_code"] == 2 for a in attempts)
    assert all(a["failure"]["kind"] == "exit_code" for a in attempts)
    assert all(a["duration_s"] is not None for a in attempts)
    assert client.logs(run["id"])["data"] == "try\n" * 3


def test_submit_answers_202_with_links(server: Server) -> None:
    response = httpx.post(
        f"{server.url}/api/v1/runs",
        json={"shell": "echo hi"},
        headers={"Authorization": f"Bearer {server.token}"},
    )
    assert response.status_code == 202
    body = response.json()
    assert set(body) >= {"id", "status", "url", "logs_url", "cancel_url", "created_at"}


def test_idempotency_key_returns_the_same_run(client: Client) -> None:
    key = uuid.uuid4().hex
    first = client.submit({"shell": "echo once"}, idempotency_key=key)
    second = client.submit({"shell": "echo once"}, idempotency_key=key)
    assert first["id"] == second["id"]
    client.wait(first["id"], 30)
    assert client.logs(first["id"])["data"] == "once\n"


def test_timeout_kills_sleep_and_double_forked_daemon(client: Client) -> None:
    marker = f"mcpexec-marker-{uuid.uuid4().hex}"
    script = (
        "import os, signal, time\n"
        "SLEEP = 'import time; time.sleep(1000)'\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"        os.execvp('python3', ['python3', '-c', SLEEP, '{marker}'])\n"
        "    os._exit(0)\n"
        f"os.execvp('python3', ['python3', '-c', SLEEP, '{marker}'])\n"
    )
    run = client.submit({"script": {"language": "python", "source": script}, "timeout_s": 1})
    done = client.wait(run["id"], timeout_s=30)
    assert done["status"] == "failed"
    assert done["failure"]["kind"] == "timeout"
    assert wait_until_gone(marker, 2.0) == []


def test_cancel_pending_run(client: Client) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    run = client.submit({"shell": "echo never", "run_at": later})
    cancelled = client.cancel(run["id"])
    assert cancelled["status"] == "cancelled"
    assert cancelled["failure"]["kind"] == "cancelled"
    assert client.cancel(run["id"])["status"] == "cancelled"  # idempotent


def test_cancel_running_run_kills_its_tree(client: Client) -> None:
    marker = f"mcpexec-marker-{uuid.uuid4().hex}"
    shell = f"setsid {sleeper(marker)} & echo started; {sleeper(marker)}"
    run = client.submit({"shell": shell})
    for event, data in client.follow(run["id"], stream="stdout"):
        if event == "output" and "started" in data["data"]:
            break
    client.cancel(run["id"])
    done = client.wait(run["id"], timeout_s=30)
    assert done["status"] == "cancelled"
    assert wait_until_gone(marker, 2.0) == []


def test_output_flood_is_capped_and_server_memory_stays_flat(
    server: Server, client: Client
) -> None:
    assert server.proc is not None
    before = rss_kib(server.proc.pid)
    cap = 1024 * 1024
    spec = {
        "shell": "head -c 300000000 /dev/zero | tr '\\0' 'a'; echo; echo the-end",
        "limits": {"max_output_bytes": cap},
        "timeout_s": 120,
    }
    done = client.wait(client.submit(spec)["id"], timeout_s=120)
    assert done["status"] == "completed"
    assert done["output_truncated"] is True
    data = client.logs(done["id"], limit=4 * cap)
    assert len(data["data"]) <= 2 * cap
    assert data["data"].rstrip().endswith("the-end")  # the tail is kept
    growth_mib = (rss_kib(server.proc.pid) - before) / 1024
    assert growth_mib < 60, f"serve grew by {growth_mib:.0f} MiB"


def test_artifacts_collected_and_symlinks_refused(server: Server, client: Client) -> None:
    canary = server.home / "canary.txt"
    canary.write_text("CANARY-SECRET")
    shell = (
        'echo report > "$MCPEXEC_OUTPUT_DIR/report.txt"; '
        f'ln -s {canary} "$MCPEXEC_OUTPUT_DIR/leak.txt"; '
        'mkdir "$MCPEXEC_OUTPUT_DIR/sub"; printf x > "$MCPEXEC_OUTPUT_DIR/sub/x.bin"'
    )
    done = client.wait(client.submit({"shell": shell})["id"], timeout_s=30)
    assert done["status"] == "completed"
    names = sorted(a["name"] for a in client.artifacts(done["id"]))
    assert names == ["report.txt", "sub/x.bin"]
    response = httpx.get(
        f"{server.url}/api/v1/runs/{done['id']}/artifacts/report.txt",
        headers={"Authorization": f"Bearer {server.token}"},
    )
    assert response.content == b"report\n"


def test_artifact_downloads_answer_one_byte_range(server: Server, client: Client) -> None:
    """A resumed or partial download (``Range``) gets 206 with that slice; past the end 416."""
    shell = 'printf 0123456789 > "$MCPEXEC_OUTPUT_DIR/digits.txt"'
    done = client.wait(client.submit({"shell": shell})["id"], timeout_s=30)
    url = f"{server.url}/api/v1/runs/{done['id']}/artifacts/digits.txt"
    auth = {"Authorization": f"Bearer {server.token}"}
    whole = httpx.get(url, headers=auth)
    assert (whole.status_code, whole.content) == (200, b"0123456789")
    assert whole.headers["accept-ranges"] == "bytes"
    for asked, status, body, content_range in (
        ("bytes=2-4", 206, b"234", "bytes 2-4/10"),
        ("bytes=7-", 206, b"789", "bytes 7-9/10"),
        ("bytes=-2", 206, b"89", "bytes 8-9/10"),
        ("bytes=5-99", 206, b"56789", "bytes 5-9/10"),
    ):
        part = httpx.get(url, headers={**auth, "Range": asked})
        assert (part.status_code, part.content) == (status, body), asked
        assert part.headers["content-range"] == content_range
        assert part.headers["content-length"] == str(len(body))
    for ignored in ("bytes=0-1,4-5", "items=0-1", "bytes=5-2", "bytes=x"):
        full = httpx.get(url, headers={**auth, "Range": ignored})
        assert (full.status_code, full.content) == (200, b"0123456789"), ignored
    beyond = httpx.get(url, headers={**auth, "Range": "bytes=10-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == "bytes */10"
    assert beyond.json()["error"]["code"] == "range_not_satisfiable"


def test_failed_run_with_artifacts_is_partial(client: Client) -> None:
    shell = 'echo half > "$MCPEXEC_OUTPUT_DIR/half.txt"; exit 1'
    done = client.wait(client.submit({"shell": shell})["id"], timeout_s=30)
    assert done["status"] == "failed"
    assert done["partial"] is True


def test_progress_and_result_files(client: Client) -> None:
    script = (
        "import json, os\n"
        "with open(os.environ['MCPEXEC_PROGRESS'], 'a') as f:\n"
        "    f.write(json.dumps({'progress': 0.5, 'message': 'half'}) + '\\n')\n"
        "    f.write(json.dumps({'progress': 0.9, 'message': 'almost'}) + '\\n')\n"
        "with open(os.environ['MCPEXEC_RESULT'], 'w') as f:\n"
        "    json.dump({'answer': 42}, f)\n"
    )
    done = client.wait(
        client.submit({"script": {"language": "python", "source": script}})["id"], 30
    )
    assert done["status"] == "completed"
    assert done["result"] == {"answer": 42}
    assert done["progress"] == {"value": 0.9, "message": "almost"}


def test_inputs_and_env(client: Client) -> None:
    spec = {
        "shell": 'cat data.txt bin.dat; echo "$GREETING"; echo "${MCPEXEC_TEST_LEAK:-clean}"',
        "inputs": {
            "data.txt": "from-input\n",
            "bin.dat": {"content": base64.b64encode(b"binary\n").decode(), "base64": True},
        },
        "env": {"GREETING": "hello"},
    }
    done = client.wait(client.submit(spec)["id"], 30)
    assert client.logs(done["id"])["data"] == "from-input\nbinary\nhello\nclean\n"


def test_run_at_delays_the_start(client: Client) -> None:
    at = datetime.now(UTC) + timedelta(seconds=1.5)
    done = client.wait(client.submit({"shell": "true", "run_at": at.isoformat()})["id"], 30)
    assert done["status"] == "completed"
    assert datetime.fromisoformat(done["started_at"]) >= at


def test_long_poll_returns_when_terminal(client: Client) -> None:
    run = client.submit({"shell": "sleep 0.3"})
    started = datetime.now(UTC)
    done = client.wait(run["id"], timeout_s=20)
    assert done["status"] == "completed"
    assert (datetime.now(UTC) - started).total_seconds() < 10


def test_rerun_and_list_filters(client: Client) -> None:
    label = uuid.uuid4().hex[:8]
    first = client.wait(client.submit({"shell": "exit 1", "labels": {"batch": label}})["id"], 30)
    again = client.rerun(first["id"])
    assert again["rerun_of"] == first["id"]
    client.wait(again["id"], 30)
    listed = client.list_runs(label=[f"batch={label}"], status=["failed"])
    assert {r["id"] for r in listed["runs"]} == {first["id"], again["id"]}
    page1 = client.list_runs(label=[f"batch={label}"], limit=1)
    page2 = client.list_runs(label=[f"batch={label}"], limit=1, cursor=page1["next_cursor"])
    assert page1["runs"][0]["id"] == again["id"]
    assert page2["runs"][0]["id"] == first["id"]
    # A time window pages by (created_at, seq): its cursor continues only a windowed list.
    since = first["created_at"]
    window = {"label": [f"batch={label}"], "created_after": since, "limit": 1}
    w1 = client.list_runs(**window)
    w2 = client.list_runs(**window, cursor=w1["next_cursor"])
    assert [w1["runs"][0]["id"], w2["runs"][0]["id"]] == [again["id"], first["id"]]
    assert w2["next_cursor"] is None
    assert "." in w1["next_cursor"]
    # Given to a list without the window, it keeps the runs below its seq.
    mixed = client.list_runs(label=[f"batch={label}"], cursor=w1["next_cursor"])
    assert [r["id"] for r in mixed["runs"]] == [first["id"]]


def test_errors_are_json_with_stable_codes(server: Server, client: Client) -> None:
    with pytest.raises(ApiError) as missing:
        client.get("no-such-run")
    assert missing.value.status == 404
    assert missing.value.api_code == "run_not_found"

    with pytest.raises(ApiError) as invalid:
        client.submit({"shell": "true", "retry": {"max_attempts": 0}})
    assert invalid.value.status == 422
    assert "retry.max_attempts" in invalid.value.message

    unauthenticated = httpx.post(f"{server.url}/api/v1/runs", json={"shell": "true"})
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"]["code"] == "unauthorized"

    huge = httpx.post(
        f"{server.url}/api/v1/runs",
        content=b'{"shell": "' + b"x" * (9 * 1024 * 1024) + b'"}',
        headers={"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"},
    )
    assert huge.status_code == 413
    assert huge.json()["error"]["code"] == "payload_too_large"


def test_health_and_metrics(server: Server) -> None:
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"
    metrics = httpx.get(
        f"{server.url}/metrics", headers={"Authorization": f"Bearer {server.token}"}
    )
    assert 'mcpexec_runs{status="pending"}' in metrics.text
    assert httpx.get(f"{server.url}/docs").status_code == 200
