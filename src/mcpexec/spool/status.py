"""``mcpexec spool status DIR``: counts per folder and the jobs in flight, read from the
directory alone (no server, no store), so it works whether or not a daemon is running."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcpexec.spool.files import SpoolDirs
from mcpexec.spool.finish import SIDECAR
from mcpexec.spool.formats import is_candidate


@dataclass
class SpoolStatus:
    root: str
    pending: int = 0
    running: int = 0
    completed: int = 0
    failed: int = 0
    daemons: list[int] = field(default_factory=list)
    jobs: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dir": self.root,
            "pending": self.pending,
            "running": self.running,
            "completed": self.completed,
            "failed": self.failed,
            "daemons": self.daemons,
            "jobs": self.jobs,
        }


def _names(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def count_results(path: Path) -> int:
    """Jobs with a result here: text (and refused) jobs have a ``NAME.result.json``, JSON jobs
    carry ``"result"`` themselves; a ``result_file`` output is neither."""
    total = 0
    for name in _names(path):
        if name.startswith("."):
            continue
        if name.endswith(SIDECAR):
            total += 1
        elif name.endswith(".json"):
            with contextlib.suppress(OSError, ValueError):
                fd = os.open(path / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                with os.fdopen(fd, "rb") as f:
                    obj = json.loads(f.read(8 << 20))
                if isinstance(obj, dict) and "result" in obj:
                    total += 1
    return total


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def spool_status(root: Path) -> SpoolStatus:
    dirs = SpoolDirs(root)
    status = SpoolStatus(root=str(root))
    status.pending = sum(1 for n in _names(dirs.pending) if is_candidate(n))
    claimed = [n for n in _names(dirs.processing) if is_candidate(n)]
    status.running = len(claimed)
    status.completed = count_results(dirs.completed)
    status.failed = count_results(dirs.failed)
    known: dict[str, dict[str, Any]] = {}
    for name in _names(dirs.root):
        if not (name.startswith(".state.") and name.endswith(".json")):
            continue
        with contextlib.suppress(OSError, ValueError):
            state = json.loads((dirs.root / name).read_text())
            if not _alive(int(state["pid"])):
                continue
            status.daemons.append(int(state["pid"]))
            for job, info in state.get("jobs", {}).items():
                known[job] = {**info, "pid": state["pid"]}
    for name in sorted(claimed):
        status.jobs.append({"file": name, **known.get(name, {"status": "claimed (no daemon)"})})
    return status


def format_status(status: SpoolStatus) -> str:
    lines = [
        f"spool {status.root}",
        f"  pending {status.pending}  running {status.running}  "
        f"completed {status.completed}  failed {status.failed}",
        "  daemon: "
        + (", ".join(f"pid {p}" for p in status.daemons) if status.daemons else "not running"),
    ]
    for job in status.jobs:
        run = job.get("run_id") or "-"
        lines.append(f"  {job['file']:<40} {job.get('status', ''):<10} run {run}")
    return "\n".join(lines)
