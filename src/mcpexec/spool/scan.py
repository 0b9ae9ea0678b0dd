"""Looking at ``pending/``: which entries are jobs, in which order (priority, then oldest)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from mcpexec.spool.files import SpoolDirs
from mcpexec.spool.formats import is_candidate, peek_priority

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True, order=True)
class Entry:
    """Sort key first: higher priority, then older, then name."""

    neg_priority: int
    mtime_ns: int
    name: str
    regular: bool = True


class PendingScanner:
    """Lists ``pending/`` and orders it. A JSON file's priority is read once per version of the
    file (name, inode, mtime, size), so rescanning a long queue does not re-read every job."""

    def __init__(self, dirs: SpoolDirs, max_bytes: int) -> None:
        self._dirs = dirs
        self._max_bytes = max_bytes
        self._priorities: dict[str, tuple[tuple[int, int, int], int]] = {}

    def scan(self) -> list[Entry]:
        entries: list[Entry] = []
        seen: set[str] = set()
        try:
            names = os.listdir(self._dirs.pending)
        except FileNotFoundError:
            return []
        for name in names:
            if not is_candidate(name):
                continue
            try:
                st = os.lstat(self._dirs.pending / name)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode):
                entries.append(Entry(0, st.st_mtime_ns, name, regular=False))
                continue
            seen.add(name)
            priority = self._priority(name, st) if name.endswith(".json") else 0
            entries.append(Entry(-priority, st.st_mtime_ns, name))
        for gone in self._priorities.keys() - seen:
            del self._priorities[gone]
        entries.sort()
        return entries

    def _priority(self, name: str, st: os.stat_result) -> int:
        version = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._priorities.get(name)
        if cached is not None and cached[0] == version:
            return cached[1]
        priority = 0
        if st.st_size <= self._max_bytes:
            try:
                fd = os.open(self._dirs.pending / name, _OPEN_FLAGS)
            except OSError:
                return 0
            try:
                priority = peek_priority(os.read(fd, self._max_bytes + 1))
            finally:
                os.close(fd)
        self._priorities[name] = (version, priority)
        return priority
