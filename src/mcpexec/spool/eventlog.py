"""``daemon.log``: one line per event, for people (``human``) or machines (``json``).

Events: ``started`` / ``stopped`` (the daemon), ``picked_up``, ``run_started``, ``finished``
(status, duration), ``invalid``, ``recovered``, ``warning``, ``error``. The file is opened with
``O_APPEND``, so several spool processes on one directory interleave whole lines, and
``logrotate``'s ``copytruncate`` works.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Literal

from mcpexec.models import utcnow

LogFormat = Literal["human", "json"]


class DaemonLog:
    def __init__(self, path: Path, fmt: LogFormat = "human") -> None:
        self.path = path
        self.format = fmt
        self._fd: int | None = None

    def open(self) -> None:
        self._fd = os.open(
            self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )

    def event(self, event: str, file: str | None = None, **fields: Any) -> None:
        now = utcnow()
        if self.format == "json":
            record = {"ts": now.isoformat(), "event": event, "pid": os.getpid()}
            if file is not None:
                record["file"] = file
            record.update({k: v for k, v in fields.items() if v is not None})
            line = json.dumps(record, ensure_ascii=False)
        else:
            stamp = now.strftime("%Y-%m-%d %H:%M:%S.") + f"{now.microsecond // 1000:03d}"
            parts = [stamp, event.replace("_", " ")]
            if file is not None:
                parts.append(file)
            parts += [f"{k}={_human(v)}" for k, v in fields.items() if v is not None]
            line = " ".join(parts)
        if self._fd is None:
            return
        # One write per line: with O_APPEND the kernel keeps concurrent lines whole.
        with contextlib.suppress(OSError):
            os.write(self._fd, (line.replace("\n", " ") + "\n").encode())

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def _human(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text
