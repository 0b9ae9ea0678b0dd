"""Seed 002's own test list, on a real App, SQLite file and executor: JSON job, text job,
error handling, timeout, result file, logging, multiple jobs, invalid job format — plus the
alternative JSON format and result_file escaping the spool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcpexec.models import RunFilter

from .conftest import drop, engine, log_lines, result_of, running, wait_path

pytestmark = pytest.mark.anyio


async def test_json_job(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    async with engine(tmp_path / "home") as app, running(app, root):
        job = {"command": "echo", "args": ["Hello, World!"], "description": "Test"}
        drop(root, "hello.json", job)
        await wait_path(root / "completed" / "hello.json")
    record = result_of(root / "completed" / "hello.json")
    assert {k: record[k] for k in job} == job
    result = record["result"]
    assert result["status"] == "completed"
    assert result["returncode"] == 0
    assert result["stdout"] == "Hello, World!\n"
    assert result["stderr"] == ""
    assert result["started_at"] <= result["completed_at"]
    assert result["attempts"] == 1
    assert result["failure"] is None
    assert result["output_truncated"] is False
    assert result["duration_s"] >= 0
    assert len(result["run_id"]) == 32
    assert not (root / "pending" / "hello.json").exists()
    assert list((root / ".processing").iterdir()) == []


async def test_text_job(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    async with engine(tmp_path / "home") as app, running(app, root):
        drop(root, "list.sh", "cd /tmp && pwd && echo listed\n")
        drop(root, "bash.txt", "#!/bin/bash\nx=(a b c); echo ${#x[@]}\n")
        await wait_path(root / "completed" / "list.sh.result.json")
        await wait_path(root / "completed" / "bash.txt.result.json")
    assert (root / "completed" / "list.sh").read_text() == "cd /tmp && pwd && echo listed\n"
    side = result_of(root / "completed" / "list.sh.result.json")
    assert side["file"] == "list.sh"
    assert side["result"]["status"] == "completed"
    assert side["result"]["stdout"] == "/tmp\nlisted\n"
    # A #!/bin/bash script runs under bash (arrays are not /bin/sh).
    assert result_of(root / "completed" / "bash.txt.result.json")["result"]["stdout"] == "3\n"


async def test_alternative_json_format_runs_through_sh(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    async with engine(tmp_path / "home") as app, running(app, root):
        job = {"task_id": "unique_id", "command": "echo $((6 * 7)) | tr 4 X", "purpose": "p"}
        drop(root, "alt.json", job)
        await wait_path(root / "completed" / "alt.json")
    record = result_of(root / "completed" / "alt.json")
    assert record["task_id"] == "unique_id"
    assert record["purpose"] == "p"
    assert record["result"]["stdout"] == "X2\n"


async def test_error_handling(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    async with engine(tmp_path / "home") as app, running(app, root):
        drop(root, "fails.json", {"command": "echo oops >&2; exit 3"})
        drop(root, "missing.json", {"command": "/nonexistent/binary", "args": []})
        await wait_path(root / "failed" / "fails.json")
        await wait_path(root / "failed" / "missing.json")
    result = result_of(root / "failed" / "fails.json")["result"]
    assert result["status"] == "failed"
    assert result["returncode"] == 3
    assert result["stderr"] == "oops\n"
    assert result["failure"]["kind"] == "exit_code"
    missing = result_of(root / "failed" / "missing.json")["result"]
    assert missing["status"] == "failed"
    assert missing["failure"]["kind"] == "spawn_error"
    assert not (root / "completed" / "fails.json").exists()


async def test_timeout(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    async with engine(tmp_path / "home") as app, running(app, root):
        drop(root, "slow.json", {"command": "sleep", "args": ["60"], "timeout_s": 0.5})
        await wait_path(root / "failed" / "slow.json")
    result = result_of(root / "failed" / "slow.json")["result"]
    assert result["status"] == "failed"
    assert result["failure"]["kind"] == "timeout"


async def test_default_timeout_is_the_spool_setting(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    async with engine(tmp_path / "home", spool_timeout_s=0.5) as app, running(app, root):
        drop(root, "slow.sh", "sleep 60\n")
        await wait_path(root / "failed" / "slow.sh.result.json")
    assert result_of(root / "failed" / "slow.sh.result.json")["result"]["failure"]["kind"] == (
        "timeout"
    )


async def test_result_file(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    async with engine(tmp_path / "home", spool_result_output_bytes=10) as app, running(app, root):
        job = {"command": "seq", "args": ["1", "1000"], "result_file": "numbers.txt"}
        drop(root, "seq.json", job)
        await wait_path(root / "completed" / "seq.json")
    expected = "".join(f"{i}\n" for i in range(1, 1001))
    # The result file has the whole stdout; the job's result is capped by the setting.
    assert (root / "completed" / "numbers.txt").read_text() == expected
    result = result_of(root / "completed" / "seq.json")["result"]
    assert result["stdout"] == expected[:10]
    assert result["output_truncated"] is True


@pytest.mark.parametrize("name", ["../escape.txt", "/tmp/abs.txt", "sub/dir.txt", ".hidden"])
async def test_result_file_leaving_the_spool_is_refused(tmp_path: Path, name: str) -> None:
    root = tmp_path / "queue"
    marker = tmp_path / "ran"
    async with engine(tmp_path / "home") as app, running(app, root):
        drop(root, "escape.json", {"command": f"touch {marker}", "result_file": name})
        await wait_path(root / "failed" / "escape.json")
    result = result_of(root / "failed" / "escape.json")["result"]
    assert result["status"] == "invalid"
    assert result["error"]["code"] == "invalid_result_file"
    assert not marker.exists()
    assert not (root / "escape.txt").exists()
    assert not (tmp_path / "escape.txt").exists()


async def test_logging(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    async with engine(tmp_path / "home") as app, running(app, root):
        drop(root, "ok.json", {"command": "true"})
        drop(root, "bad.json", "{not json")
        await wait_path(root / "completed" / "ok.json")
        await wait_path(root / "failed" / "bad.json.result.json")
    lines = log_lines(root)
    assert "started dir=" in lines[0]
    assert any(" picked up ok.json kind=json" in line for line in lines)
    assert any(" run started ok.json " in line and "attempt=1" in line for line in lines)
    done = [line for line in lines if " finished ok.json " in line]
    assert len(done) == 1
    assert "status=completed" in done[0]
    assert "duration_s=" in done[0]
    assert any(" invalid bad.json code=invalid_json" in line for line in lines)
    assert " stopped" in lines[-1]
    # Every line starts with a timestamp.
    assert all(line[:4].isdigit() and line[4] == "-" for line in lines)


async def test_logging_json(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    async with engine(tmp_path / "home") as app, running(app, root, log_format="json"):
        drop(root, "ok.json", {"command": "true"})
        await wait_path(root / "completed" / "ok.json")
    records = [json.loads(line) for line in log_lines(root)]
    events = [r["event"] for r in records]
    assert events[0] == "started"
    assert events[-1] == "stopped"
    finished = next(r for r in records if r["event"] == "finished")
    assert finished["file"] == "ok.json"
    assert finished["status"] == "completed"
    assert isinstance(finished["duration_s"], float)
    assert all("ts" in r for r in records)


async def test_multiple_jobs_each_once(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    side = tmp_path / "side"
    side.mkdir()
    names = [f"job{i:02d}.json" for i in range(20)]
    async with engine(tmp_path / "home") as app, running(app, root) as spool:
        for name in names:
            drop(root, name, {"command": f"echo {name} >> {side}/log; echo {name}"})
        for name in names:
            await wait_path(root / "completed" / name)
        page = await app.list_runs(spool.principal, RunFilter(), limit=100)
    assert sorted((side / "log").read_text().split()) == names
    assert {result_of(root / "completed" / n)["result"]["stdout"] for n in names} == {
        f"{n}\n" for n in names
    }
    assert sorted(r.labels["spool/file"] for r in page.runs) == names


async def test_unknown_fields_are_kept(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    job = {
        "command": "true",
        "x-owner": {"team": "brain"},
        "description": "d",
        "labels": {"a": "b"},
    }
    async with engine(tmp_path / "home") as app, running(app, root) as spool:
        drop(root, "keep.json", job)
        await wait_path(root / "completed" / "keep.json")
        record = result_of(root / "completed" / "keep.json")
        run = await app.get(record["result"]["run_id"], spool.principal)
    assert record["x-owner"] == {"team": "brain"}
    assert record["labels"] == {"a": "b"}
    assert run.labels == {"a": "b", "spool/file": "keep.json"}
    assert run.spec.timeout_s == 300.0  # the seed's five minutes


async def test_jobs_run_as_the_configured_tenant(tmp_path: Path) -> None:
    root = tmp_path / "queue"
    async with (
        engine(tmp_path / "home", spool_tenant="team-a") as app,
        running(app, root) as spool,
    ):
        drop(root, "t.json", {"command": "true"})
        await wait_path(root / "completed" / "t.json")
        run = await app.get(
            result_of(root / "completed" / "t.json")["result"]["run_id"], spool.principal
        )
    assert spool.principal.tenant == "team-a"
    assert run.tenant == "team-a"
