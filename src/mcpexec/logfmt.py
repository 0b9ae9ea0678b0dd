"""Log records as text or as JSON lines, with the run they are about (issue 17).

``bind_run`` puts ``run_id``, ``tenant``, ``attempt`` and ``worker_id`` into the current
context (a ``ContextVar``: an asyncio task copies it when created, so a worker binds it once at
the start of each attempt's task and every record logged from that task — the worker's, the
executor's — carries it). ``extra={"run_id": …}`` on one call works too. ``configure`` installs
the one stderr handler of a process: ``text`` (a human line; the run's fields appended in
brackets) or ``json`` (one object per line: ``ts``, ``level``, ``logger``, ``message``, the run's
fields where they apply, ``exc`` with a traceback).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

#: The fields a record may carry about the run it concerns, in output order.
FIELDS = ("run_id", "tenant", "attempt", "worker_id")
LogFormat = Literal["text", "json"]

_context: ContextVar[Mapping[str, Any] | None] = ContextVar("mcpexec_log_context", default=None)


def bind_run(**fields: Any) -> None:
    """Add run fields to the current context (for the rest of the current asyncio task)."""
    _context.set({**(_context.get() or {}), **{k: v for k, v in fields.items() if k in FIELDS}})


def run_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The run fields of ``record``: its context's, overridden by its own ``extra``."""
    fields = dict(_context.get() or {})
    for name in FIELDS:
        value = record.__dict__.get(name)
        if value is not None:
            fields[name] = value
    return {name: fields[name] for name in FIELDS if fields.get(name) is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in messages are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **run_fields(record),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The human line, with the run's fields appended (``[run_id=… attempt=1]``)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = run_fields(record)
        if not fields:
            return line
        shown = " ".join(f"{k}={v}" for k, v in fields.items())
        head, sep, rest = line.partition("\n")  # after the message, before a traceback
        return f"{head} [{shown}]{sep}{rest}"


def configure(level: str, fmt: LogFormat = "text") -> None:
    """Send every record at ``level`` or above to stderr in ``fmt`` (replacing any handler)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
