"""The per-attempt working directory and every file exchanged with the run's process through it.

A run can rewrite anything in its workdir while it runs, including replacing a file we are
about to read with a symlink to ``/etc/shadow`` or a FIFO that blocks ``open`` forever. So every
access after the spawn goes through :meth:`Workdir.open_beneath`: one ``openat`` per path component
from a directory descriptor taken at creation, each with ``O_NOFOLLOW``, then ``fstat`` checks that
the result is a regular file. ``O_NONBLOCK`` keeps opening a planted FIFO from blocking.

Layout (``$HOME`` is the workdir itself)::

    <workdir>/            inputs, cwd
      .mcpexec/           script source, progress.jsonl, result.json
      output/             $MCPEXEC_OUTPUT_DIR: files left here become artifacts
      tmp/                $TMPDIR
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from mcpexec.models import Progress

CONTROL_DIR = ".mcpexec"
OUTPUT_DIR = "output"
TMP_DIR = "tmp"
_LAYOUT = (CONTROL_DIR, OUTPUT_DIR, TMP_DIR)  # what every workdir starts with
PROGRESS_FILE = f"{CONTROL_DIR}/progress.jsonl"
RESULT_FILE = f"{CONTROL_DIR}/result.json"
RESULT_MAX_BYTES = 1024 * 1024
PROGRESS_WINDOW = 64 * 1024  # only the end of a huge progress file matters
MAX_ARTIFACT_DEPTH = 16
MAX_ARTIFACT_ENTRIES = 10_000  # directory entries examined, whatever the run created

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def leaf_name(run_id: str, attempt: int) -> str:
    """``<run_id>.<attempt>``, made safe as one path component (also a cgroup name)."""
    safe = _UNSAFE.sub("_", run_id)[:100].lstrip(".") or "run"
    return f"{safe}.{attempt}"


def printable_name(name: str) -> str:
    """``name`` as text that can be stored and shown. A file name that is not valid UTF-8 comes
    from ``listdir`` with lone surrogates (``surrogateescape``); its bytes are shown as
    ``\\xNN``."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _parts(relpath: str) -> list[str]:
    parts = relpath.split("/")
    if relpath.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"{relpath!r} is not a plain relative path")
    return parts


def _not_json(name: str) -> Any:
    """``json.loads`` takes ``NaN`` and ``Infinity``; JSON (RFC 8259) has neither, and a result
    holding one would go out as invalid JSON through MCP (its serializer writes ``NaN``)."""
    raise ValueError(f"{name} is not a JSON number")


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "not a regular file"


class Workdir:
    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    @classmethod
    def create(
        cls, parent: Path, leaf: str, mount: Callable[[Path], None] | None = None
    ) -> Workdir:
        """A fresh directory; ``mount`` (e.g. a size-limited tmpfs) is called on it while it is
        still empty."""
        path = parent / leaf
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:  # a leftover of the same attempt: never reuse it
            path = parent / f"{leaf}.{secrets.token_hex(3)}"
            os.mkdir(path, 0o700)
        if mount is not None:
            try:
                mount(path)
            except BaseException:
                os.rmdir(path)
                raise
        fd = os.open(path, _DIR)
        for name in _LAYOUT:
            os.mkdir(name, 0o700, dir_fd=fd)
        return cls(path, fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def remove(self) -> None:
        """Delete the tree. Only once every process of the run is dead: ``rmtree`` works from
        directory descriptors and does not follow symlinks."""
        # Most runs leave the fresh layout as it was made: three empty directories. rmdir
        # refuses anything else (never follows a symlink), and then rmtree does the full walk;
        # the walk costs about twice the syscalls of these four rmdirs, on every run. The
        # layout goes by the workdir's descriptor: no path to build and resolve per directory.
        try:
            if self.fd >= 0:
                for name in _LAYOUT:
                    os.rmdir(name, dir_fd=self.fd)
            self.close()
            os.rmdir(self.path)
        except OSError:
            self.close()
            shutil.rmtree(self.path, ignore_errors=True)

    def _walk(self, dirs: list[str], create: bool) -> int:
        """A descriptor for the directory ``dirs`` beneath the workdir (caller closes it)."""
        cur = os.dup(self.fd)
        try:
            for name in dirs:
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, 0o700, dir_fd=cur)
                nxt = os.open(name, _DIR, dir_fd=cur)
                os.close(cur)
                cur = nxt
        except BaseException:
            os.close(cur)
            raise
        return cur

    def open_beneath(self, relpath: str, flags: int = _FILE) -> int:
        """Open ``relpath`` without following any symlink on the way."""
        *dirs, last = _parts(relpath)
        dfd = self._walk(dirs, create=False)
        try:
            return os.open(last, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        finally:
            os.close(dfd)

    def write_new(self, relpath: str, data: bytes, mode: int = 0o600) -> None:
        """Create a file that must not exist yet (O_EXCL), creating parent directories."""
        *dirs, last = _parts(relpath)
        dfd = self._walk(dirs, create=True)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(last, flags, mode, dir_fd=dfd)
        finally:
            os.close(dfd)
        with open(fd, "wb") as f:
            f.write(data)

    def read_result(self) -> tuple[Any, str | None]:
        """The run's JSON result (or ``None``) and a note explaining why it was ignored."""
        try:
            fd = self.open_beneath(RESULT_FILE)
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            reason = "a symlink" if exc.errno == errno.ELOOP else exc.strerror
            return None, f"result file refused: {reason}"
        with open(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                return None, f"result file refused: {_kind(st.st_mode)}"
            if st.st_size > RESULT_MAX_BYTES:
                return None, f"result file ignored: larger than {RESULT_MAX_BYTES} bytes"
            data = f.read(RESULT_MAX_BYTES + 1)
        try:
            return (json.loads(data, parse_constant=_not_json) if data.strip() else None), None
        except (ValueError, RecursionError) as exc:
            return None, f"result file is not valid JSON: {exc}"[:300]

    def artifacts(
        self, max_count: int, max_bytes: int, refused: list[str], notes: list[str]
    ) -> Iterator[tuple[str, BinaryIO, int]]:
        """Yield ``(name, open file, size)`` for each regular file under ``output/``; names are
        relative with ``/``. Everything else is appended to ``refused``, with a note why."""

        def refuse(name: str, why: str | None) -> None:
            shown = printable_name(name)
            refused.append(shown)
            notes.append(f"artifact {shown!r} refused: {why}")

        try:
            root = self._walk([OUTPUT_DIR], create=False)
        except FileNotFoundError:
            return
        except OSError as exc:
            refuse(OUTPUT_DIR, "a symlink" if exc.errno == errno.ELOOP else exc.strerror)
            return
        count = total = 0
        for rel, dfd, name, st in self._output_entries(root, refuse, notes):
            if printable_name(rel) != rel:
                refuse(rel, "its name is not valid UTF-8")
            elif not stat.S_ISREG(st.st_mode):
                refuse(rel, _kind(st.st_mode))
            elif count >= max_count:
                refuse(rel, f"more than {max_count} artifacts")
            elif total + st.st_size > max_bytes:
                refuse(rel, f"artifacts would exceed {max_bytes} bytes")
            else:
                try:
                    fd = os.open(name, _FILE, dir_fd=dfd)
                except OSError as exc:  # swapped for a symlink since the lstat
                    refuse(rel, "a symlink" if exc.errno == errno.ELOOP else exc.strerror)
                    continue
                with open(fd, "rb") as f:
                    fst = os.fstat(fd)
                    if not stat.S_ISREG(fst.st_mode) or fst.st_ino != st.st_ino:
                        refuse(rel, "changed while being collected")
                        continue
                    size = min(fst.st_size, max_bytes - total)
                    count += 1
                    total += size
                    yield rel, f, size

    @staticmethod
    def _output_entries(
        root: int, refuse: Callable[[str, str | None], None], notes: list[str]
    ) -> Iterator[tuple[str, int, str, os.stat_result]]:
        """Every non-directory entry under ``output/`` as ``(relative name, dir fd, name,
        lstat)``, walking directories by descriptor, never through a symlink; bounded in depth
        and in entries examined. Takes ownership of ``root``."""
        pending = [("", root, 0)]
        seen = 0
        try:
            while pending:
                prefix, dfd, depth = pending.pop(0)
                try:
                    for name in sorted(os.listdir(dfd)):
                        seen += 1
                        if seen > MAX_ARTIFACT_ENTRIES:
                            notes.append(f"artifacts: stopped after {MAX_ARTIFACT_ENTRIES} entries")
                            return
                        try:
                            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                        except OSError:
                            continue
                        if not stat.S_ISDIR(st.st_mode):
                            yield prefix + name, dfd, name, st
                            continue
                        sub = -1
                        if depth + 1 >= MAX_ARTIFACT_DEPTH:
                            refuse(prefix + name, "nested too deep")
                        else:
                            with contextlib.suppress(OSError):
                                sub = os.open(name, _DIR, dir_fd=dfd)
                        if sub >= 0:
                            pending.append((f"{prefix}{name}/", sub, depth + 1))
                finally:
                    os.close(dfd)
        finally:
            for _, dfd, _ in pending:
                os.close(dfd)


def parse_progress(line: bytes) -> Progress | None:
    """A progress line ``{"progress": 0.0-1.0, "message": "..."}``; anything else is ignored."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    value, message = obj.get("progress"), obj.get("message")
    valid_value = value is None or (
        isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0
    )
    valid_message = message is None or isinstance(message, str)
    if not (valid_value and valid_message) or (value is None and message is None):
        return None
    return Progress(value=value, message=None if message is None else message[:1000])


class ProgressTail:
    """Follows ``progress.jsonl`` and reports the latest valid line when it changes."""

    def __init__(self, workdir: Workdir) -> None:
        self._wd = workdir
        self._ino: int | None = None
        self._pos = 0
        self._partial = b""
        self.last: Progress | None = None

    def poll(self, final: bool = False) -> Progress | None:
        try:
            fd = self._wd.open_beneath(PROGRESS_FILE)
        except (OSError, ValueError):
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            if st.st_ino != self._ino or st.st_size < self._pos:  # replaced or truncated
                self._ino, self._pos, self._partial = st.st_ino, 0, b""
            start = max(self._pos, st.st_size - PROGRESS_WINDOW)
            data = os.pread(fd, st.st_size - start, start) if st.st_size > start else b""
        finally:
            os.close(fd)
        skipped = start > self._pos
        self._pos = start + len(data)
        if skipped:  # jumped ahead: the first line is a fragment
            data = data[data.find(b"\n") + 1 :] if b"\n" in data else b""
            self._partial = b""
        lines = (self._partial + data).split(b"\n")
        self._partial = b"" if final else lines.pop()[-PROGRESS_WINDOW:]
        for line in reversed(lines):
            progress = parse_progress(line) if line.strip() else None
            if progress is not None:
                if progress == self.last:
                    return None
                self.last = progress
                return progress
        return None
