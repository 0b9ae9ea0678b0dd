"""``--log-format json`` on a real ``serve``: every line of its stderr is one JSON object, and
records about a run name it (issue 17)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from mcpexec.logfmt import JsonFormatter, TextFormatter, bind_run

from .conftest import make_server


def one_run(tmp_path: Path, args: list[str], **env: str) -> tuple[str, list[dict[str, Any]]]:
    """Start ``serve`` with ``args`` and ``env``, complete one run, stop; the run's id and
    every line ``serve`` logged, each parsed as one JSON object."""
    srv = make_server(tmp_path, workers=1, **env)
    srv.args = args
    srv.start()
    try:
        with srv.client() as client:
            run = client.submit({"shell": "echo hi"})
            assert client.wait(run["id"], timeout_s=60)["status"] == "completed"
    finally:
        srv.stop()
    lines = [line for line in srv.log().splitlines() if line.strip()]
    return run["id"], [json.loads(line) for line in lines]  # every line is one object


def test_serve_logs_json_lines_with_the_run(tmp_path: Path) -> None:
    run_id, records = one_run(tmp_path, ["--log-format", "json"], MCPEXEC_LOG_LEVEL="DEBUG")
    assert all({"ts", "level", "logger", "message"} <= r.keys() for r in records)
    assert any(r["message"].startswith("mcpexec ready on") for r in records)
    about = [r for r in records if r.get("run_id") == run_id]
    finished = [r for r in about if r["message"] == "attempt finished: run completed"]
    assert len(finished) == 1
    assert finished[0]["tenant"] == "default"
    assert finished[0]["attempt"] == 1
    assert finished[0]["worker_id"]
    assert finished[0]["level"] == "debug"


def test_serve_log_level_setting_hides_debug(tmp_path: Path) -> None:
    _, records = one_run(tmp_path, ["--log-level", "warning"], MCPEXEC_LOG_FORMAT="json")
    assert all(r["level"] in ("warning", "error", "critical") for r in records)


def _record(msg: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("mcpexec.worker", logging.WARNING, __file__, 1, msg, (), None)
    record.__dict__.update(extra)
    return record


def test_formatters_carry_bound_and_extra_fields() -> None:
    import contextvars

    def inside() -> tuple[str, str]:
        bind_run(run_id="r1", tenant="acme", attempt=2, worker_id="w1", other="ignored")
        record = _record("line one\nline two")
        return JsonFormatter().format(record), TextFormatter().format(record)

    as_json, as_text = contextvars.copy_context().run(inside)
    entry = json.loads(as_json)
    assert "\n" not in as_json
    assert entry["message"] == "line one\nline two"
    assert (entry["run_id"], entry["tenant"], entry["attempt"], entry["worker_id"]) == (
        "r1", "acme", 2, "w1",
    )  # fmt: skip
    assert "other" not in entry
    assert as_text.endswith("line one [run_id=r1 tenant=acme attempt=2 worker_id=w1]\nline two")
    # outside that context nothing is bound; a record's own extra still counts
    plain = json.loads(JsonFormatter().format(_record("x", run_id="r2")))
    assert plain["run_id"] == "r2"
    assert "tenant" not in plain
    assert TextFormatter().format(_record("y")).endswith("mcpexec.worker: y")
