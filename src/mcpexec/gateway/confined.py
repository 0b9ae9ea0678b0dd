"""``ConfinedRoot``: every filesystem access of the ``fs`` server, resolved from one root fd.

Confinement is handle-based. At start the sandbox directory is opened once (``O_PATH``); every
later path is a tuple of plain names (:mod:`mcpexec.gateway.paths`) opened *beneath that
descriptor*, never a string the kernel resolves from ``/``:

- ``openat2`` resolver (Linux ≥ 5.6): one ``openat2(root_fd, "a/b/c", …, RESOLVE_BENEATH |
  RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)``; the kernel refuses any symlink on the way
  (``ELOOP``) and any escape (``EXDEV``) atomically with the lookup.
- ``walk`` resolver (fallback): ``openat(fd, name, O_PATH | O_NOFOLLOW)`` per component from the
  root fd, ``fstat`` of each new handle (a symlink is refused, a non-directory stops the walk).

Either way a directory swapped for a symlink mid-call is met as a symlink (refused) or as the
directory it was (whose fd we then hold): there is no check-then-use window. Symlinks are refused
wherever they are (final, mid-path, dangling): inside the sandbox means reachable from the root
by real directory entries. Files are opened for I/O only after an ``O_PATH`` handle proved them
regular, and then with ``O_NONBLOCK`` and a second ``fstat`` (a FIFO swapped in meanwhile never
blocks and is refused).
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Literal

from mcpexec.gateway import _linux
from mcpexec.gateway._linux import openat2_available
from mcpexec.gateway.errors import (
    FileTooLarge,
    FsError,
    FsPermissionDenied,
    HardLinkRefused,
    InvalidPath,
    NotADirectory,
    NotARegularFile,
    PathExists,
    PathNotFound,
    PathOutsideSandbox,
)
from mcpexec.gateway.paths import encode_name, root_forms, split_path

__all__ = ["ConfinedRoot", "FsLimits", "Resolver", "openat2_available"]

Resolver = Literal["openat2", "walk"]
Kind = Literal["file", "directory", "symlink", "fifo", "socket", "device", "other"]

_RESOLVE = _linux.RESOLVE_BENEATH | _linux.RESOLVE_NO_SYMLINKS | _linux.RESOLVE_NO_MAGICLINKS
_DIR = os.O_RDONLY | os.O_DIRECTORY
_EAGAIN_TRIES = 8  # openat2 returns EAGAIN when a concurrent rename may have raced the lookup
NEW_FILE_MODE = 0o644
NEW_DIR_MODE = 0o755


@dataclass(frozen=True)
class FsLimits:
    """Size and count caps of the ``fs`` tools (settings pass their own)."""

    max_read_bytes: int = 10 * 1024 * 1024
    max_write_bytes: int = 10 * 1024 * 1024
    max_list_entries: int = 10_000
    max_search_results: int = 1_000
    max_search_depth: int = 16
    max_search_visits: int = 100_000


def kind_of(mode: int) -> Kind:
    """The file type of an ``st_mode`` in the words the tools use."""
    for test, kind in (
        (stat.S_ISREG, "file"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "device"),
        (stat.S_ISBLK, "device"),
    ):
        if test(mode):
            return kind  # type: ignore[return-value]
    return "other"


def os_error(path: str, exc: OSError) -> FsError:
    """The sandbox's error for an ``OSError`` met while handling ``path``."""
    code = exc.errno
    if code == errno.ELOOP:
        return PathOutsideSandbox(path, kind="symlink")
    if code == errno.EXDEV:
        return PathOutsideSandbox(path)
    table: dict[int, tuple[type[FsError], str]] = {
        errno.ENOENT: (PathNotFound, "does not exist"),
        errno.ENOTDIR: (NotADirectory, "has a component that is not a directory"),
        errno.EISDIR: (NotARegularFile, "is a directory"),
        errno.ENXIO: (NotARegularFile, "is not a regular file (socket or device)"),
        errno.ENAMETOOLONG: (InvalidPath, "is too long"),
        errno.EEXIST: (PathExists, "already exists"),
        errno.ENOTEMPTY: (PathExists, "is a directory that is not empty"),
        errno.EACCES: (FsPermissionDenied, "is not accessible (permission denied)"),
        errno.EPERM: (FsPermissionDenied, "is not accessible (operation not permitted)"),
        errno.EINVAL: (InvalidPath, "cannot be used for this operation"),
    }
    cls, reason = table.get(code or 0, (FsError, f"failed ({errno.errorcode.get(code or 0)})"))
    return cls(path, reason)


class ConfinedRoot:
    """The sandbox directory as a descriptor; every method takes the caller's path string."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        limits: FsLimits | None = None,
        resolver: Literal["auto", "openat2", "walk"] = "auto",
    ) -> None:
        self.root = os.fspath(root)
        if resolver == "openat2" and not openat2_available():
            raise FsError(self.root, "cannot be confined with openat2 (not on this kernel)")
        self.resolver: Resolver = (
            "openat2" if resolver != "walk" and openat2_available() else "walk"
        )
        self.limits = limits or FsLimits()
        self._forms = root_forms(self.root)
        try:  # the operator's path: symlinks in it are the operator's choice
            self._fd = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise os_error(self.root, exc) from None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> ConfinedRoot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def names(self, path: str) -> tuple[str, ...]:
        """The plain names of ``path`` beneath the root (refusals raised here)."""
        return split_path(path, self._forms)

    # -- resolution ---------------------------------------------------------------------------

    def _open(self, dirfd: int, rel: tuple[str, ...], path: str, flags: int) -> int:
        """``rel`` opened beneath ``dirfd`` with ``flags``; symlinks on the way are refused.

        With ``O_PATH`` a final symlink comes back as a handle to the link (the walk) — the
        callers ``fstat`` what they get and refuse it.
        """
        rel = rel or (".",)
        flags |= os.O_NOFOLLOW | os.O_CLOEXEC
        if not flags & os.O_PATH:  # openat2 refuses O_PATH with any other flag (EINVAL)
            flags |= os.O_NOCTTY
        if self.resolver == "openat2":
            blob = encode_name(path, "/".join(rel))
            for _ in range(_EAGAIN_TRIES):
                try:
                    return _linux.openat2(dirfd, blob, flags, 0, _RESOLVE)
                except OSError as exc:
                    if exc.errno != errno.EAGAIN:
                        raise os_error(path, exc) from None
            raise FsError(path, "kept changing while it was resolved")
        cur = dirfd
        try:
            for name in rel[:-1]:
                nxt = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur)
                if cur != dirfd:
                    os.close(cur)
                cur = nxt
                mode = os.fstat(cur).st_mode
                if stat.S_ISLNK(mode):
                    raise PathOutsideSandbox(path, kind="symlink")
                if not stat.S_ISDIR(mode):
                    raise NotADirectory(path, "has a component that is not a directory")
            return os.open(rel[-1], flags, dir_fd=cur)
        except OSError as exc:
            raise os_error(path, exc) from None
        finally:
            if cur != dirfd:
                os.close(cur)

    def _open_checked(
        self, names: tuple[str, ...], path: str, flags: int, want: Literal["dir", "file", "any"]
    ) -> tuple[int, os.stat_result]:
        fd = self._open(self._fd, names, path, flags)
        try:
            st = os.fstat(fd)
            _check(path, st, want)
        except BaseException:
            os.close(fd)
            raise
        return fd, st

    def _open_dir(self, names: tuple[str, ...], path: str) -> int:
        # O_PATH first: O_DIRECTORY | O_NOFOLLOW on a symlink says ENOTDIR, not "symlink".
        handle, _ = self._open_checked(names, path, os.O_PATH, "dir")
        try:
            return os.open(".", _DIR | os.O_CLOEXEC, dir_fd=handle)
        except OSError as exc:
            raise os_error(path, exc) from None
        finally:
            os.close(handle)

    @contextmanager
    def open_dir(self, path: str) -> Iterator[int]:
        """An ``O_RDONLY`` descriptor of the directory ``path`` (closed on exit)."""
        fd = self._open_dir(self.names(path), path)
        try:
            yield fd
        finally:
            os.close(fd)

    @contextmanager
    def open_file(self, path: str) -> Iterator[tuple[int, os.stat_result]]:
        """A blocking ``O_RDONLY`` descriptor of the regular file ``path`` and its ``fstat``."""
        names = self.names(path)
        probe, _ = self._open_checked(names, path, os.O_PATH, "file")
        os.close(probe)  # proved regular without opening it for I/O
        fd, st = self._open_checked(names, path, os.O_RDONLY | os.O_NONBLOCK, "file")
        try:
            os.set_blocking(fd, True)
            yield fd, st
        finally:
            os.close(fd)

    def stat(self, path: str) -> os.stat_result:
        """``fstat`` of an ``O_PATH`` handle of ``path`` (a symlink is refused, not described)."""
        fd, st = self._open_checked(self.names(path), path, os.O_PATH, "any")
        os.close(fd)
        return st

    @contextmanager
    def open_parent(self, path: str) -> Iterator[tuple[int, str]]:
        """The ``O_RDONLY`` descriptor of the directory holding ``path``, and the final name."""
        names = self.names(path)
        if not names:
            raise InvalidPath(path, "is the sandbox directory itself")
        fd = self._open_dir(names[:-1], path)
        try:
            yield fd, names[-1]
        finally:
            os.close(fd)

    def open_subdir(self, dirfd: int, name: str, path: str) -> int | None:
        """``name`` beneath ``dirfd`` as an ``O_RDONLY`` directory, or None if it is not one."""
        try:
            fd = self._open(dirfd, (name,), path, _DIR)
        except FsError:
            return None  # a symlink, gone, or not a directory (anymore)
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        return fd

    # -- changes ------------------------------------------------------------------------------

    def write_bytes(self, path: str, data: bytes) -> bool:
        """Replace or create ``path`` atomically with ``data``; True if it was created.

        A temporary file made with ``O_CREAT | O_EXCL`` in the target's directory is renamed
        over the name, so an existing entry is replaced, never written through. An existing
        symlink (dangling or not), non-regular file or file with other hard links is refused.
        """
        if len(data) > self.limits.max_write_bytes:
            raise FileTooLarge(
                path, f"content is {len(data)} bytes; the limit is {self.limits.max_write_bytes}"
            )
        with self.open_parent(path) as (dfd, name):
            old = lstat_at(dfd, name, path)
            if old is not None:
                _check_replaceable(path, old)
            mode = stat.S_IMODE(old.st_mode) & 0o777 if old is not None else NEW_FILE_MODE
            tmp = f".mcpexec-{secrets.token_hex(8)}.tmp"
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                fd = os.open(tmp, flags, 0o600, dir_fd=dfd)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fchmod(fd, mode)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            except OSError as exc:
                with suppress(OSError):
                    os.unlink(tmp, dir_fd=dfd)
                raise os_error(path, exc) from None
        return old is None

    def make_dirs(self, path: str) -> list[str]:
        """Create ``path`` and missing parents (``mkdirat`` from each parent's fd); new names."""
        names = self.names(path)
        created: list[str] = []
        cur = os.dup(self._fd)
        try:
            for i, name in enumerate(names):
                try:
                    os.mkdir(name, NEW_DIR_MODE, dir_fd=cur)
                    created.append("/".join(names[: i + 1]))
                except FileExistsError:
                    pass
                except OSError as exc:
                    raise os_error(path, exc) from None
                nxt = self._open(cur, (name,), path, os.O_PATH)
                os.close(cur)
                cur = nxt
                _check(path, os.fstat(cur), "dir")
        finally:
            os.close(cur)
        return created

    def move(self, source: str, destination: str) -> None:
        """Rename ``source`` to ``destination`` without replacing anything (both confined)."""
        with (
            self.open_parent(source) as (sfd, sname),
            self.open_parent(destination) as (
                dfd,
                dname,
            ),
        ):
            old = lstat_at(sfd, sname, source)
            if old is None:
                raise PathNotFound(source, "does not exist")
            if stat.S_ISLNK(old.st_mode):
                raise PathOutsideSandbox(source, kind="symlink")
            src, dst = encode_name(source, sname), encode_name(destination, dname)
            try:
                _linux.renameat2(sfd, src, dfd, dst, _linux.RENAME_NOREPLACE)
            except OSError as exc:
                if exc.errno == errno.EINVAL:
                    raise InvalidPath(destination, "is inside the directory being moved") from None
                if exc.errno not in (errno.ENOSYS, errno.EOPNOTSUPP):
                    raise os_error(destination, exc) from None
                self._move_without_renameat2(sfd, sname, dfd, dname, old, destination)

    @staticmethod
    def _move_without_renameat2(
        sfd: int, sname: str, dfd: int, dname: str, old: os.stat_result, destination: str
    ) -> None:
        # link() never replaces an existing name: the no-replace guarantee without renameat2.
        if stat.S_ISDIR(old.st_mode):
            raise FsError(destination, "cannot be the target of a directory move here")
        try:
            os.link(sname, dname, src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)
            os.unlink(sname, dir_fd=sfd)
        except OSError as exc:
            raise os_error(destination, exc) from None


def lstat_at(dirfd: int, name: str, path: str) -> os.stat_result | None:
    """``fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW)``, or None if nothing is there."""
    try:
        return os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise os_error(path, exc) from None


def _check(path: str, st: os.stat_result, want: Literal["dir", "file", "any"]) -> None:
    kind = kind_of(st.st_mode)
    if kind == "symlink":
        raise PathOutsideSandbox(path, kind="symlink")
    if want == "dir" and kind != "directory":
        raise NotADirectory(path, "is not a directory")
    if want == "file" and kind != "file":
        raise NotARegularFile(path, f"is not a regular file ({kind})")


def _check_replaceable(path: str, old: os.stat_result) -> None:
    kind = kind_of(old.st_mode)
    if kind == "symlink":
        raise PathOutsideSandbox(path, kind="symlink")
    if kind != "file":
        raise NotARegularFile(path, f"is not a regular file ({kind})")
    if old.st_nlink > 1:
        raise HardLinkRefused(path, f"has {old.st_nlink} hard links; it is not overwritten")
