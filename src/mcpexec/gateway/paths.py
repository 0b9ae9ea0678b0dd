"""Turning a caller's path into names beneath the sandbox root: pure, no filesystem access.

The result is a tuple of plain names (no ``""``, ``"."``, ``".."``, no ``/``) that the resolver
opens one beneath the other from the root's descriptor. Rules:

- NUL anywhere, a path of ``PATH_MAX`` bytes or more, a component over ``NAME_MAX`` bytes, or a
  string that cannot be a Linux filename are :class:`InvalidPath`.
- ``..`` is resolved here, by dropping the previous name. That is exact, not an approximation,
  because the sandbox never follows a symlink: a name's parent is the directory holding it. A
  ``..`` that climbs above the root is :class:`PathOutsideSandbox`. The kernel is never handed a
  ``..`` (``RESOLVE_BENEATH`` would refuse an escape anyway: defence in depth).
- An absolute path is accepted only when its leading components *equal* the root's components
  (as configured, or as the kernel resolved it at start), compared name by name: ``/srv/box_evil``
  is not inside ``/srv/box`` (CVE-2025-53110 was a string-prefix check). The components before
  the root are compared literally (no ``..`` normalisation there), the rest is relative.
- ``~`` is a name like any other (no home expansion).
"""

from __future__ import annotations

import os

from mcpexec.gateway.errors import InvalidPath, PathOutsideSandbox

PATH_MAX = 4096  # bytes including the terminating NUL (linux/limits.h)
NAME_MAX = 255  # bytes per component

RootForm = tuple[str, ...]


def root_forms(root: str) -> tuple[RootForm, ...]:
    """The component tuples an absolute caller path may start with to name ``root``."""
    forms: list[RootForm] = []
    for form in (os.path.abspath(root), os.path.realpath(root)):
        parts = tuple(p for p in form.split("/") if p)
        if parts not in forms:
            forms.append(parts)
    return tuple(forms)


def encode_name(path: str, name: str) -> bytes:
    """``name`` as the kernel sees it; ``path`` is the caller's, for the message."""
    try:
        return os.fsencode(name)
    except UnicodeEncodeError:
        raise InvalidPath(path, "is not a valid file name (unencodable characters)") from None


def split_path(path: str, forms: tuple[RootForm, ...]) -> tuple[str, ...]:
    """The names of ``path`` beneath the root, or a refusal naming ``path`` as given."""
    if "\x00" in path:
        raise InvalidPath(path, "contains a NUL byte")
    size = len(encode_name(path, path))
    if size >= PATH_MAX:
        raise InvalidPath(path, f"is too long ({size} bytes; the limit is {PATH_MAX - 1})")
    raw = path.split("/")
    if path.startswith("/"):
        literal = [p for p in raw if p not in ("", ".")]
        for form in forms:
            if tuple(literal[: len(form)]) == form:
                raw = literal[len(form) :]
                break
        else:
            raise PathOutsideSandbox(path)
    names: list[str] = []
    for part in raw:
        if part in ("", "."):
            continue
        if part == "..":
            if not names:
                raise PathOutsideSandbox(path)
            names.pop()
            continue
        if len(encode_name(path, part)) > NAME_MAX:
            raise InvalidPath(path, f"has a component longer than {NAME_MAX} bytes")
        names.append(part)
    return tuple(names)


def join(names: tuple[str, ...]) -> str:
    """The names as one relative path (``.`` for the root)."""
    return "/".join(names) or "."
