"""Retention: entries of ``completed/`` and ``failed/`` older than ``spool_retention_days`` are
removed (the seed's "result archiving"). Age is the entry's mtime, which the spool sets when it
writes or moves a result. Symlinks refused into ``failed/`` are unlinked, never followed."""

from __future__ import annotations

import os
import shutil
import stat
import time

from mcpexec.spool.files import SpoolDirs


def purge_old(dirs: SpoolDirs, max_age_s: float, now: float | None = None) -> int:
    """Remove entries older than ``max_age_s``; returns how many went."""
    cutoff = (time.time() if now is None else now) - max_age_s
    removed = 0
    for directory in (dirs.completed, dirs.failed):
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            continue
        for name in names:
            path = directory / name
            try:
                st = os.lstat(path)
                if st.st_mtime >= cutoff:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    shutil.rmtree(path)  # rmtree never follows symlinks inside
                else:
                    os.unlink(path)
            except FileNotFoundError:
                continue
            removed += 1
    return removed
