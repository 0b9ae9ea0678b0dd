"""Runs: the list (status, label and task filters, cursor paging, live rows) and one run
(spec, attempts, log tail that follows, artifacts, result, cancel, rerun)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from mcpexec.dashboard.page import Get, Nav, Post, View
from mcpexec.errors import InvalidRequest
from mcpexec.models import RunFilter, RunStatus, Stream
from mcpexec.tenancy import Action
from mcpexec.views import download_headers

NAV = Nav("Runs", "/runs", 20)
PAGE_SIZE = 50
#: Bytes of each stream a page or one follow step reads.
LOG_CHUNK = 64 * 1024
STREAMS = (Stream.STDOUT, Stream.STDERR)


def run_filter(view: View) -> tuple[RunFilter, dict[str, str]]:
    """The filter of the query string, and the query itself (for the form and the links)."""
    keys = ("status", "label", "task", "tenant", "after", "before")
    query = {k: view.request.query_params.get(k, "").strip() for k in keys}
    statuses: frozenset[RunStatus] = frozenset()
    if query["status"]:
        try:
            statuses = frozenset({RunStatus(query["status"])})
        except ValueError:
            raise InvalidRequest(f"status {query['status']!r} is not a run status") from None
    labels: dict[str, str] = {}
    if query["label"]:
        key, sep, value = query["label"].partition("=")
        if not sep or not key:
            raise InvalidRequest("the label filter is KEY=VALUE")
        labels[key] = value
    shown = {k: v for k, v in query.items() if v}
    filt = RunFilter(
        status=statuses,
        labels=labels,
        task=query["task"] or None,
        tenant=query["tenant"] or None,  # an admin's filter; anyone else sees their own only
        created_after=_utc(query["after"], "after"),
        created_before=_utc(query["before"], "before"),
    )
    return filt, shown


def _utc(text: str, name: str) -> datetime | None:
    """A ``datetime-local`` value (no zone) read as UTC, or an ISO 8601 time with its zone."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"{name} {text!r} is not a date and time (ISO 8601)") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def runs(view: View) -> Response:
    filt, query = run_filter(view)
    cursor = view.request.query_params.get("cursor") or None
    page = await view.app.list_runs(view.principal, filt, PAGE_SIZE, cursor)
    return view.render(
        "runs.html",
        title="Runs",
        page=page,
        query=query,
        cursor=cursor,
        statuses=[s.value for s in RunStatus],
    )


async def rows(view: View) -> Response:
    """The rows of the first page (what the list's live update fetches)."""
    filt, _ = run_filter(view)
    page = await view.app.list_runs(view.principal, filt, PAGE_SIZE)
    html = view.ui.env.get_template("runs_rows.html").render(runs=page.runs)
    return HTMLResponse(html)


async def detail(view: View) -> Response:
    run_id = view.param("run_id")
    run = await view.app.get(run_id, view.principal)
    attempts = await view.app.attempts(run_id, view.principal)
    artifacts = await view.app.artifacts(run_id, view.principal)
    logs, offsets = await _read(view, run_id, {s: 0 for s in STREAMS})
    return view.render(
        "run.html",
        title=f"Run {run.id[:12]}",
        run=run,
        attempts=attempts,
        artifacts=artifacts,
        logs=logs,
        offsets={s.value: o for s, o in offsets.items()},
        can_cancel=not run.terminal and view.can(Action.CANCEL, run),
        can_rerun=view.can(Action.SUBMIT),
    )


async def log_follow(view: View) -> Response:
    """New log text since the offsets given, and the run's status (JSON for ui.js)."""
    run_id = view.param("run_id")
    given = {}
    for stream in STREAMS:
        raw = view.request.query_params.get(stream.value, "0")
        if not raw.isdigit():
            raise InvalidRequest(f"{stream.value} is a byte offset")
        given[stream] = int(raw)
    logs, offsets = await _read(view, run_id, given)
    run = await view.app.get(run_id, view.principal)
    body: dict[str, Any] = {
        "chunks": [{"stream": s.value, "text": t} for s, t in logs],
        "offsets": {s.value: o for s, o in offsets.items()},
        "status": run.status.value,
        "terminal": run.terminal,
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


async def _read(
    view: View, run_id: str, offsets: dict[Stream, int]
) -> tuple[list[tuple[Stream, str]], dict[Stream, int]]:
    logs: list[tuple[Stream, str]] = []
    after = dict(offsets)
    for stream in STREAMS:
        data, nxt, complete = await view.app.read_logs(
            run_id, view.principal, stream, offsets[stream], LOG_CHUNK
        )
        text, used = _decode(data, final=complete)
        after[stream] = offsets[stream] + used if used < len(data) else nxt
        if text:
            logs.append((stream, text))
    return logs, after


def _decode(data: bytes, *, final: bool) -> tuple[str, int]:
    """Text of ``data``, leaving a UTF-8 sequence cut at the end for the next read."""
    if not final:
        for cut in range(1, min(4, len(data)) + 1):
            if data[-cut] & 0xC0 != 0x80:  # the start of the last sequence
                need = 2 if data[-cut] >= 0xC0 else 1
                need = 3 if data[-cut] >= 0xE0 else need
                need = 4 if data[-cut] >= 0xF0 else need
                if need > cut:
                    data = data[:-cut]
                break
    return data.decode("utf-8", errors="replace"), len(data)


async def artifact(view: View) -> Response:
    """An artifact's bytes, always as a download (never rendered on the dashboard's origin)."""
    run_id, name = view.param("run_id"), view.param("name")
    found, chunks = await view.app.artifact_bytes(run_id, name, view.principal)
    return StreamingResponse(
        chunks, media_type="application/octet-stream", headers=download_headers(found)
    )


async def cancel(view: View) -> Response:
    run = await view.app.cancel(view.param("run_id"), view.principal)
    return view.redirect(f"/ui/runs/{run.id}")


async def rerun(view: View) -> Response:
    run = await view.app.rerun(view.param("run_id"), view.principal)
    return view.redirect(f"/ui/runs/{run.id}")


ROUTES = [
    Get("/runs", runs),
    Get("/runs/rows", rows),
    Get("/runs/{run_id}", detail),
    Get("/runs/{run_id}/log", log_follow),
    Get("/runs/{run_id}/artifacts/{name:path}", artifact),
    Post("/runs/{run_id}/cancel", cancel),
    Post("/runs/{run_id}/rerun", rerun),
]
