"""Durable commits without holding SQLite's one thread: the WAL is fsynced on a thread of its own.

``synchronous = FULL`` makes COMMIT fsync the WAL before it returns, on the store's only
thread, so every claim, finish and read queued behind a durable submit waited for the disk
(on a busy disk that was half of the thread's time). Here the durable group commits with
``NORMAL`` (its frames are written to the WAL, not yet synced) and then waits for
:class:`WalSyncer`, which ``fdatasync``s the WAL file: once that returns, every frame written
before it started is on the disk, which is what FULL promised. Commits that arrive while a sync
runs share the next one.

Why this is safe: SQLite in WAL mode with ``NORMAL`` syncs the WAL before a checkpoint copies
frames into the database, syncs the database after it, and syncs the WAL header before the file
is reused; so a committed frame is always either in the WAL (synced by us or by the
checkpoint) or in the synced database file. The syncer keeps its own descriptor of the WAL and
reopens it if the file was replaced (its inode changed), which SQLite does only when the last
connection closes, and never while ours is open.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from mcpexec.errors import StoreError

#: Told once the commits it was given are durable (``None``) or could not be made so.
Done = Callable[[BaseException | None], None]


class WalSyncer:
    """``fdatasync`` of one database's WAL file, for the commits waiting on it."""

    def __init__(self, db_path: Path) -> None:
        self.wal_path = Path(f"{db_path}-wal")
        self._fd = -1
        self._ino = -1
        self._cond = threading.Condition()
        self._waiting: list[Done] = []
        self._closed = False
        self._thread: threading.Thread | None = None
        self.syncs = 0  # how many fsyncs were done (tests and benchmarks read it)

    def after_commit(self, done: Done) -> None:
        """Call ``done`` once what was committed before this call is on the disk."""
        with self._cond:
            if self._closed:
                raise StoreError("the store is closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="mcpexec-sqlite-sync", daemon=True
                )
                self._thread.start()
            self._waiting.append(done)
            self._cond.notify()

    def close(self) -> None:
        """Finish the syncs asked for, then stop the thread and close the descriptor."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closed:
                    self._cond.wait()
                if not self._waiting:
                    return
                batch, self._waiting = self._waiting, []
            error: BaseException | None = None
            try:
                self._sync()
            except OSError as exc:
                error = StoreError(f"SQLite: could not sync the WAL to disk: {exc}")
            for done in batch:
                done(error)

    def _sync(self) -> None:
        if os.stat(self.wal_path).st_ino != self._ino:  # first use, or the file was replaced
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            self._fd = os.open(self.wal_path, os.O_RDONLY | os.O_CLOEXEC)
            self._ino = os.fstat(self._fd).st_ino
        os.fdatasync(self._fd)
        self.syncs += 1
