"""Reading a step's checkpoint file safely (issue 16).

The file is written by the step's process, which may be hostile: the path is opened one
component at a time from a descriptor of the workspace with ``O_NOFOLLOW`` (a symlink anywhere on
the way is refused, so is ``..``), ``O_NONBLOCK`` (a planted FIFO cannot block), and ``fstat``
must show a regular file no larger than the cap. Its content is JSON (or YAML, read as safely as
definitions are) validated against the step's schema. An accepted file is made 0600.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from dataclasses import dataclass
from typing import Any, Literal

from jsonschema import Draft202012Validator

from mcpexec.errors import InvalidRequest
from mcpexec.task_files import _load_yaml
from mcpexec.workflows.spec import CheckpointSpec

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class CheckpointRead:
    status: Literal["missing", "valid", "invalid"]
    content: Any = None
    message: str = ""
    #: (mtime_ns, size) of the file read, to alert once per version of a bad file.
    stamp: tuple[int, int] | None = None


def open_beneath(workspace: str, rel: str) -> int:
    """A descriptor of ``rel`` inside ``workspace``, no symlink followed on the way (``OSError``:
    ``ENOENT``, ``ELOOP``, ``ENOTDIR``, ...)."""
    parts = rel.split("/")
    fd = os.open(workspace, _DIR)
    try:
        for part in parts[:-1]:
            nxt = os.open(part, _DIR, dir_fd=fd)
            os.close(fd)
            fd = nxt
        return os.open(parts[-1], _FILE, dir_fd=fd)
    finally:
        os.close(fd)


def read_text(workspace: str, rel: str, max_bytes: int) -> str:
    """A regular file's text inside the workspace (role instructions); ``ValueError`` why not."""
    try:
        fd = open_beneath(workspace, rel)
    except OSError as exc:
        raise ValueError(f"{rel}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ValueError(f"{rel}: not a regular file")
        return handle.read(max_bytes).decode("utf-8", "replace")


def read_checkpoint(workspace: str, spec: CheckpointSpec) -> CheckpointRead:
    """The checkpoint as it is now: missing, valid (with its content) or invalid (why)."""
    try:
        fd = open_beneath(workspace, spec.file)
    except FileNotFoundError:
        return CheckpointRead("missing")
    except OSError as exc:
        return _refused(spec, exc)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        stamp = (info.st_mtime_ns, info.st_size)
        if not stat.S_ISREG(info.st_mode):
            return CheckpointRead(
                "invalid", message=f"{spec.file}: not a regular file", stamp=stamp
            )
        if info.st_size > spec.max_bytes:
            return CheckpointRead(
                "invalid",
                message=f"{spec.file}: {info.st_size} bytes, more than {spec.max_bytes}",
                stamp=stamp,
            )
        data = handle.read(spec.max_bytes + 1)
        if stat.S_IMODE(info.st_mode) != 0o600:  # only once: a chmod is an inotify event, and
            with contextlib.suppress(OSError):  # the engine watching it would tick again
                os.fchmod(handle.fileno(), 0o600)
    return _validate(spec, data, stamp)


def _refused(spec: CheckpointSpec, exc: OSError) -> CheckpointRead:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return CheckpointRead("invalid", message=f"{spec.file}: a symlink on the way; refused")
    return CheckpointRead("invalid", message=f"{spec.file}: {exc.strerror}")


def _validate(spec: CheckpointSpec, data: bytes, stamp: tuple[int, int]) -> CheckpointRead:
    if not data.strip():
        return CheckpointRead("invalid", message=f"{spec.file}: empty", stamp=stamp)
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return CheckpointRead("invalid", message=f"{spec.file}: not UTF-8 text", stamp=stamp)
    try:
        if spec.file.endswith((".yaml", ".yml")):
            content = _load_yaml(text, spec.file)
        else:
            content = json.loads(text)
    except (ValueError, InvalidRequest) as exc:
        return CheckpointRead("invalid", message=f"{spec.file}: not valid: {exc}", stamp=stamp)
    if spec.schema_:
        errors = list(Draft202012Validator(spec.schema_).iter_errors(content))
        if errors:
            first = errors[0]
            where = "/".join(str(p) for p in first.path) or "(top)"
            return CheckpointRead(
                "invalid",
                message=f"{spec.file}: {where}: {first.message}",
                stamp=stamp,
            )
    return CheckpointRead("valid", content=content, stamp=stamp)
