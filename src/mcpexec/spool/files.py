"""The file protocol of a spool directory: layout, safe opening, claims, atomic writes.

Layout (all created 0700)::

    DIR/pending/       jobs are dropped here (write elsewhere or as a dotfile/*.tmp, then rename)
    DIR/.processing/   claimed jobs: moved here by rename, so only one spool process takes a file
    DIR/completed/     finished jobs with their results
    DIR/failed/        failed, cancelled and invalid jobs with their results
    DIR/daemon.log     one line per event

A claim holds an ``flock`` on the job's inode from before the rename until the job's file has
left ``.processing/``; the kernel drops it when the process dies, which is how a restarted (or a
second) spool process tells an orphaned claim from a live one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import signal
import stat
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PENDING, PROCESSING, COMPLETED, FAILED = "pending", ".processing", "completed", "failed"
DAEMON_LOG = "daemon.log"
STATE_FILE = ".state.json"
#: Without leases, a file must be unmodified this long before it is taken.
SETTLE_NS = 500_000_000
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True)
class SpoolDirs:
    root: Path

    @property
    def pending(self) -> Path:
        return self.root / PENDING

    @property
    def processing(self) -> Path:
        return self.root / PROCESSING

    @property
    def completed(self) -> Path:
        return self.root / COMPLETED

    @property
    def failed(self) -> Path:
        return self.root / FAILED

    @property
    def log_path(self) -> Path:
        return self.root / DAEMON_LOG

    @property
    def state_path(self) -> Path:
        return self.root / STATE_FILE

    def create(self) -> list[str]:
        """Create the layout (0700 for new directories); return warnings about loose modes."""
        warnings = []
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        for sub in (self.pending, self.processing, self.completed, self.failed):
            sub.mkdir(exist_ok=True, mode=0o700)
        for path in (self.root, self.pending):
            mode = path.stat().st_mode
            if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
                warnings.append(
                    f"{path} is world-writable: anyone on this host can submit jobs or replace "
                    "them (chmod 700 it)"
                )
            elif mode & stat.S_IWOTH:
                warnings.append(f"{path} is world-writable: anyone on this host can submit jobs")
        return warnings


class Busy(Exception):
    """The file is still open for writing, or another spool process is claiming it."""


class Gone(Exception):
    """The file disappeared (another spool process took it)."""


class NotRegular(Exception):
    """A symlink, FIFO, socket, device or directory."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def describe_mode(mode: int) -> str:
    for test, what in (
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return what
    return "not a regular file"


def leases_usable() -> bool:
    """A read lease tells us at once whether any process has a file open for writing. Taking
    one makes the kernel signal us (SIGIO) if a writer opens the file meanwhile, so it is used
    only when SIGIO cannot kill this process (see ``ignore_sigio``)."""
    return signal.getsignal(signal.SIGIO) not in (signal.SIG_DFL, None)


def ignore_sigio() -> None:
    """Ignore SIGIO (mcpexec uses no signal-driven I/O), when called from the main thread."""
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGIO, signal.SIG_IGN)


def open_for_writing(fd: int) -> bool | None:
    """Whether some process has the file open for writing: ``True``/``False`` from a read
    lease, ``None`` when leases cannot tell (not our file without CAP_LEASE, leases off, a
    filesystem without them)."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except BlockingIOError:
        return True
    except OSError:
        return None
    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    return False


@dataclass
class Claimed:
    """A job file this process owns in ``.processing/`` (its fd holds the flock)."""

    name: str
    fd: int
    data: bytes
    ino: int
    mtime_ns: int

    def key(self, dirs: SpoolDirs, tenant: str) -> str:
        """The idempotency key of the run: the file's name, content and identity (device, inode,
        mtime; a rename keeps them), so resubmitting after a crash finds the same run, while the
        same content dropped again later under the same name is a new job."""
        digest = hashlib.sha256()
        for part in (str(dirs.root.resolve()), tenant, self.name, f"{self.ino}:{self.mtime_ns}"):
            digest.update(part.encode() + b"\0")
        digest.update(self.data)
        return "spool:" + digest.hexdigest()

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _open_regular(path: Path) -> tuple[int, os.stat_result]:
    """Open without following a symlink and without blocking on a FIFO; refuse non-files."""
    try:
        before = os.lstat(path)
    except FileNotFoundError:
        raise Gone(str(path)) from None
    if not stat.S_ISREG(before.st_mode):
        raise NotRegular(describe_mode(before.st_mode))
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        raise Gone(str(path)) from None
    except OSError as exc:  # ELOOP: swapped for a symlink since the lstat
        raise NotRegular(f"not openable safely ({exc.strerror})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotRegular(describe_mode(st.st_mode))
    return fd, st


def _read_capped(fd: int, size: int, cap: int) -> bytes:
    """At most ``cap + 1`` bytes (enough to tell an oversized file)."""
    chunks, left = [], min(size, cap) + 1
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _lock(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise Busy("claimed by another spool process") from None


def claim(dirs: SpoolDirs, name: str, max_bytes: int, *, use_lease: bool) -> Claimed:
    """Take ``pending/NAME``: lock its inode, check no writer has it open, read it, then rename
    it into ``.processing/``. Raises Busy, Gone or NotRegular (the caller moves those away)."""
    src = dirs.pending / name
    fd, st = _open_regular(src)
    _lock(fd)
    try:
        writing = open_for_writing(fd) if use_lease else None
        if writing is None:
            # Leases cannot tell: a file modified within SETTLE_NS may still be being written.
            writing = time.time_ns() - st.st_mtime_ns < SETTLE_NS
        if writing:
            raise Busy("still open for writing")
        data = _read_capped(fd, st.st_size, max_bytes)
        try:
            os.rename(src, dirs.processing / name)
        except FileNotFoundError:
            raise Gone(name) from None
        moved = os.lstat(dirs.processing / name)
        if (moved.st_dev, moved.st_ino) != (st.st_dev, st.st_ino):
            # pending/NAME was replaced between our open and the rename: what we moved is a
            # file we have not read or locked. Leave it to the .processing/ rescan.
            raise Gone(name)
    except BaseException:
        os.close(fd)
        raise
    return Claimed(name=name, fd=fd, data=data, ino=st.st_ino, mtime_ns=st.st_mtime_ns)


def adopt(dirs: SpoolDirs, name: str, max_bytes: int) -> Claimed:
    """Take over ``.processing/NAME`` left by a spool process that died (its flock is gone).
    Raises Busy while a live process holds it, Gone once it has left."""
    path = dirs.processing / name
    fd, st = _open_regular(path)
    _lock(fd)
    try:
        now = os.lstat(path)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) or os.fstat(fd).st_nlink == 0:
            raise Gone(name)  # finished by its owner between our open and our lock
        data = _read_capped(fd, st.st_size, max_bytes)
    except FileNotFoundError:
        os.close(fd)
        raise Gone(name) from None
    except BaseException:
        os.close(fd)
        raise
    return Claimed(name=name, fd=fd, data=data, ino=st.st_ino, mtime_ns=st.st_mtime_ns)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, sync_dir: bool = True) -> None:
    """Write ``data`` to a temporary dotfile beside ``path``, fsync it, rename it over ``path``
    (a symlink at ``path`` is replaced, never followed) and fsync the directory."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if sync_dir:
        fsync_dir(path.parent)


def move(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst`` (replacing it), set its mtime to now (retention counts from
    the finish), and make the rename durable."""
    os.replace(src, dst)
    with contextlib.suppress(OSError):
        os.utime(dst, follow_symlinks=False)
    fsync_dir(dst.parent)  # the source directory needs none: see finish._drop_claim
