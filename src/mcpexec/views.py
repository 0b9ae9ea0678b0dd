"""How domain objects look on the wire, shared by the adapters (REST and MCP show a run the same
way). Pure: models in, JSON-ready dicts out; no adapter imports another, they both import this."""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from typing import Any
from urllib.parse import quote

import orjson

from mcpexec.errors import RangeNotSatisfiable
from mcpexec.models import Artifact, Attempt, Run

#: A lone surrogate (U+D800..U+DFFF): it cannot be encoded as UTF-8.
_SURROGATE = re.compile("[\ud800-\udfff]")


def wire_safe(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings replaced by U+FFFD. Input is refused at
    the edge when it is not valid Unicode, but a value stored before that check (a label written
    by an older version) must still render on every surface instead of failing the answer.

    A surrogate is rare and the walk is not free (~0.1 ms for a run, on every answer): orjson,
    which refuses a lone surrogate, encodes the value first (~1 µs for a run); only when it
    refuses (a surrogate, or what it cannot encode at all) the stdlib's text is scanned, and
    the walk done when the scan finds one."""
    try:
        orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)
        return value
    except orjson.JSONEncodeError:
        pass
    if _SURROGATE.search(json.dumps(value, ensure_ascii=False, default=str, skipkeys=True)):
        return _replaced(value)
    return value


def _replaced(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_replaced(k): _replaced(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_replaced(v) for v in value]
    return value


#: What a brief run view leaves out of ``run_view``: the spec, the retry policy and the links
#: (MCP's everyday ``get_run``; ``detail=true`` has them). Not dumped at all: the spec is most
#: of a run's size.
BRIEF_OMITS = ("spec", "retry", "url", "logs_url", "cancel_url", "artifacts_url")


def run_view(run: Run, base_url: str = "", *, brief: bool = False) -> dict[str, Any]:
    """A run as the API returns it, with links to its sub-resources (``brief``: without
    :data:`BRIEF_OMITS`)."""
    exclude = {"seq", "spec", "retry"} if brief else {"seq"}
    data: dict[str, Any] = wire_safe(run.model_dump(mode="json", exclude=exclude))
    data["kind"] = run.spec.kind
    if run.estimated_duration_ms is None:  # absent without history (not null)
        del data["estimated_duration_ms"]
    data["max_attempts"] = run.retry.max_attempts
    if brief:
        return data
    url = f"{base_url}/api/v1/runs/{run.id}"
    data["url"] = url
    data["logs_url"] = f"{url}/logs"
    data["cancel_url"] = url
    data["artifacts_url"] = f"{url}/artifacts"
    return data


#: The fields a runs list may be cut down to (``GET /api/v1/runs?fields=status,exit_code``);
#: ``id`` is always there. ``url`` is the run's link, the others are ``run_view``'s.
RUN_FIELDS = (
    "status",
    "exit_code",
    "failure",
    "attempts",
    "created_at",
    "started_at",
    "finished_at",
    "task",
    "tenant",
    "labels",
    "priority",
    "partial",
    "progress",
    "result",
    "url",
)


def run_fields_view(run: Run, fields: Collection[str], base_url: str = "") -> dict[str, Any]:
    """``id`` and ``fields`` (of ``RUN_FIELDS``) of ``run_view``, without building the rest."""
    data: dict[str, Any] = {"id": run.id}
    data |= wire_safe(run.model_dump(mode="json", include=set(fields) - {"url"}))
    if "url" in fields:
        data["url"] = f"{base_url}/api/v1/runs/{run.id}"
    return data


#: A run as each item of a batch submit answers it: enough to follow it (``GET`` it, or read
#: many statuses at once, for the rest); the whole ``run_view`` of 1,000 runs cost more than
#: storing them.
_BRIEF = {"id", "status", "created_at", "idempotency_key", "task", "task_version"}


def run_brief(run: Run, base_url: str = "") -> dict[str, Any]:
    """``id``, ``status``, ``created_at``, ``idempotency_key``, ``task``, ``task_version`` and
    the links of ``run_view``."""
    data: dict[str, Any] = wire_safe(run.model_dump(mode="json", include=_BRIEF))
    url = f"{base_url}/api/v1/runs/{run.id}"
    data |= {
        "url": url,
        "logs_url": f"{url}/logs",
        "cancel_url": url,
        "artifacts_url": f"{url}/artifacts",
    }
    return data


def attempt_view(attempt: Attempt) -> dict[str, Any]:
    data: dict[str, Any] = wire_safe(attempt.model_dump(mode="json"))
    data["duration_s"] = attempt.duration_s
    return data


def artifact_view(artifact: Artifact, base_url: str = "") -> dict[str, Any]:
    data = artifact.model_dump(mode="json")
    data["url"] = f"{base_url}/api/v1/runs/{artifact.run_id}/artifacts/{artifact.name}"
    return data


def download_headers(artifact: Artifact, disposition: str = "attachment") -> dict[str, str]:
    """The headers of an artifact's download (what Starlette's ``FileResponse`` would send for
    a file named like the artifact's last path component)."""
    filename = artifact.name.rsplit("/", 1)[-1]
    quoted = quote(filename)
    if quoted != filename:
        value = f"{disposition}; filename*=utf-8''{quoted}"
    else:
        value = f'{disposition}; filename="{filename}"'
    return {"Content-Disposition": value, "Content-Length": str(artifact.size)}


_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one byte range (first, last; inclusive) a ``Range`` header asks of ``size`` bytes,
    or ``None`` for the whole (no header, another unit, several ranges or a malformed one:
    RFC 9110 lets a server ignore those). ``RangeNotSatisfiable`` past the end."""
    match = _RANGE.fullmatch((header or "").strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # the last N bytes
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if last and first and int(last) < int(first):
        return None
    if start >= size or end < start:
        raise RangeNotSatisfiable(f"bytes {header} of {size}", size=size)
    return start, end
