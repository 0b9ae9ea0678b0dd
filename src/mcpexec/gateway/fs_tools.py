"""The tools of the built-in ``fs`` server, over a :class:`ConfinedRoot`.

The same tools as seed 001 and the reference filesystem server (``read_text_file``,
``read_file``, ``write_file``, ``list_directory``, ``create_directory``, ``move_file``,
``search_files``, ``get_file_info``), each a plain synchronous function with a JSON Schema for
its input, returning a JSON-able dict. They block on the filesystem: async callers use
:func:`call_fs_tool_async` (a worker thread). Paths in results are written the way the caller
wrote the path it passed (never the server's absolute root).
"""

from __future__ import annotations

import base64
import binascii
import functools
import mimetypes
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread

from mcpexec.gateway.confined import ConfinedRoot, kind_of, os_error
from mcpexec.gateway.errors import FileTooLarge, InvalidArguments, UnknownTool
from mcpexec.gateway.fs_search import search
from mcpexec.gateway.fs_validate import validate_arguments

_CHUNK = 64 * 1024
_TEXT_TYPES = ("application/json", "application/xml", "application/javascript")
_MARKERS = {"file": "[FILE]", "directory": "[DIR]", "symlink": "[LINK]"}

Handler = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class FsTool:
    """One tool of the ``fs`` server: what MCP's ``tools/list`` shows, and its function."""

    name: str
    description: str
    input_schema: dict[str, Any]
    handler: Handler
    read_only: bool


def _too_large(path: str, size: int, limit: int) -> FileTooLarge:
    return FileTooLarge(path, f"is {size} bytes; the limit is {limit}", size=size, limit=limit)


def _read_all(root: ConfinedRoot, path: str) -> tuple[bytes, os.stat_result]:
    limit = root.limits.max_read_bytes
    with root.open_file(path) as (fd, st):
        if st.st_size > limit:
            raise _too_large(path, st.st_size, limit)
        chunks, total = [], 0
        while chunk := os.read(fd, min(_CHUNK, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:  # grew while we read
                raise _too_large(path, total, limit)
    return b"".join(chunks), st


def _head(fd: int, lines: int, limit: int, path: str) -> bytes:
    buf, seen = b"", 0
    while seen < lines:
        chunk = os.read(fd, _CHUNK)
        if not chunk:
            break
        buf += chunk
        seen += chunk.count(b"\n")
        if len(buf) > limit and buf[:limit].count(b"\n") < lines:
            raise _too_large(path, len(buf), limit)
    return b"".join(buf.splitlines(keepends=True)[:lines])


def _tail(fd: int, size: int, lines: int, limit: int, path: str) -> bytes:
    buf, pos, seen = b"", size, 0
    # one more newline than lines: the final line's own newline does not start a line
    while pos > 0 and seen <= lines:
        step = min(_CHUNK, pos)
        pos -= step
        chunk = os.pread(fd, step, pos)
        buf = chunk + buf
        seen += chunk.count(b"\n")
        if len(buf) > limit and buf[-limit:].count(b"\n") <= lines:
            raise _too_large(path, len(buf), limit)
    return b"".join(buf.splitlines(keepends=True)[-lines:]) if lines else b""


def read_text_file(
    root: ConfinedRoot, path: str, head: int | None = None, tail: int | None = None
) -> dict[str, Any]:
    """The file as UTF-8 text (invalid bytes replaced), or only its first/last lines."""
    if head is not None and tail is not None:
        raise InvalidArguments("head, tail: give at most one of them", field="head")
    if head is None and tail is None:
        data, _ = _read_all(root, path)
    else:
        limit = root.limits.max_read_bytes
        with root.open_file(path) as (fd, st):
            if head is not None:
                data = _head(fd, head, limit, path)
            else:
                data = _tail(fd, st.st_size, tail or 0, limit, path)
    return {"path": path, "content": data.decode("utf-8", errors="replace")}


def read_file(root: ConfinedRoot, path: str) -> dict[str, Any]:
    """The file's content: text when it is UTF-8 of a textual type, else base64."""
    data, _ = _read_all(root, path)
    mime, _ = mimetypes.guess_type(os.path.basename(path), strict=False)
    textual = mime is None or mime.startswith("text/") or mime in _TEXT_TYPES
    if textual:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return {
                "path": path,
                "content": text,
                "encoding": "utf-8",
                "mimeType": mime or "text/plain",
                "size": len(data),
            }
    return {
        "path": path,
        "content": base64.b64encode(data).decode("ascii"),
        "encoding": "base64",
        "mimeType": mime or "application/octet-stream",
        "size": len(data),
    }


def write_file(
    root: ConfinedRoot, path: str, content: str, encoding: str = "utf-8"
) -> dict[str, Any]:
    """Create or replace the file atomically (a temporary file renamed over the name)."""
    limit = root.limits.max_write_bytes
    if len(content) > (limit * 4 // 3 + 4 if encoding == "base64" else limit):
        raise _too_large(path, len(content), limit)  # each character is at least one byte
    if encoding == "base64":
        try:
            data = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidArguments("content: not valid base64", field="content") from None
    else:
        try:
            data = content.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArguments("content: not valid Unicode text", field="content") from None
    created = root.write_bytes(path, data)
    return {"path": path, "created": created, "size": len(data)}


def list_directory(root: ConfinedRoot, path: str) -> dict[str, Any]:
    """The directory's entries, typed from the entry itself (symlinks shown, never followed)."""
    limit = root.limits.max_list_entries
    entries: list[dict[str, str]] = []
    truncated = False
    with root.open_dir(path) as fd, os.scandir(fd) as it:
        for entry in it:
            if len(entries) >= limit:
                truncated = True
                break
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except FileNotFoundError:
                continue  # removed since the directory was read
            entries.append({"name": entry.name, "type": kind_of(mode)})
    entries.sort(key=lambda e: e["name"])
    lines = [f"{_MARKERS.get(e['type'], '[OTHER]')} {e['name']}" for e in entries]
    if truncated:
        lines.append(f"… (stopped after {limit} entries)")
    return {"path": path, "entries": entries, "truncated": truncated, "text": "\n".join(lines)}


def create_directory(root: ConfinedRoot, path: str) -> dict[str, Any]:
    """Create the directory and its missing parents; an existing directory is fine."""
    return {"path": path, "created": root.make_dirs(path)}


def move_file(root: ConfinedRoot, source: str, destination: str) -> dict[str, Any]:
    """Move or rename a file or directory; fails if the destination exists."""
    root.move(source, destination)
    return {"source": source, "destination": destination}


def search_files(
    root: ConfinedRoot,
    path: str,
    pattern: str,
    excludePatterns: list[str] | None = None,  # the reference server's names
    maxResults: int | None = None,
    maxDepth: int | None = None,
) -> dict[str, Any]:
    """Files and directories beneath ``path`` whose relative path matches the glob."""
    limits = root.limits
    found = search(
        root,
        path,
        pattern,
        excludePatterns or [],
        min(maxResults or limits.max_search_results, limits.max_search_results),
        min(maxDepth or limits.max_search_depth, limits.max_search_depth),
    )
    return {
        "path": path,
        "pattern": pattern,
        "matches": found.matches,
        "truncated": found.truncated,
    }


def _time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def get_file_info(root: ConfinedRoot, path: str) -> dict[str, Any]:
    """Type, size, times, permissions and link count, from ``fstat`` of a handle."""
    st = root.stat(path)
    kind = kind_of(st.st_mode)
    return {
        "path": path,
        "type": kind,
        "size": st.st_size,
        "modified": _time(st.st_mtime),
        "accessed": _time(st.st_atime),
        "changed": _time(st.st_ctime),
        "permissions": f"{stat.S_IMODE(st.st_mode):o}",
        "links": st.st_nlink,
        "isFile": kind == "file",
        "isDirectory": kind == "directory",
    }


def _schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


_PATH = {
    "type": "string",
    "description": "A path in the sandbox, relative to its root "
    "(an absolute path must lie beneath the sandbox directory).",
}
_LINES = {"type": "integer", "minimum": 0, "maximum": 1_000_000}

FS_TOOLS: tuple[FsTool, ...] = (
    FsTool(
        "read_text_file",
        "Read a file as UTF-8 text; head/tail give only the first/last N lines.",
        _schema({"path": _PATH, "head": _LINES, "tail": _LINES}, ["path"]),
        read_text_file,
        True,
    ),
    FsTool(
        "read_file",
        "Read a file: text if it is UTF-8 text, else base64, with a MIME type.",
        _schema({"path": _PATH}, ["path"]),
        read_file,
        True,
    ),
    FsTool(
        "write_file",
        "Create or replace a file atomically (content as UTF-8 text or base64).",
        _schema(
            {
                "path": _PATH,
                "content": {"type": "string"},
                "encoding": {"type": "string", "enum": ["utf-8", "base64"]},
            },
            ["path", "content"],
        ),
        write_file,
        False,
    ),
    FsTool(
        "list_directory",
        "List a directory: [FILE], [DIR], [LINK] (not followed), [OTHER].",
        _schema({"path": _PATH}, ["path"]),
        list_directory,
        True,
    ),
    FsTool(
        "create_directory",
        "Create a directory and its missing parents.",
        _schema({"path": _PATH}, ["path"]),
        create_directory,
        False,
    ),
    FsTool(
        "move_file",
        "Move or rename a file or directory; fails if the destination exists.",
        _schema({"source": _PATH, "destination": _PATH}, ["source", "destination"]),
        move_file,
        False,
    ),
    FsTool(
        "search_files",
        "Find entries whose path relative to 'path' matches a glob ('*', "
        "'?', '[…]', '**'); symlinks are not followed; results and depth are bounded.",
        _schema(
            {
                "path": _PATH,
                "pattern": {"type": "string", "minLength": 1},
                "excludePatterns": {"type": "array", "items": {"type": "string"}, "maxItems": 64},
                "maxResults": {"type": "integer", "minimum": 1},
                "maxDepth": {"type": "integer", "minimum": 1},
            },
            ["path", "pattern"],
        ),
        search_files,
        True,
    ),
    FsTool(
        "get_file_info",
        "Type, size, times, permissions and link count of a path.",
        _schema({"path": _PATH}, ["path"]),
        get_file_info,
        True,
    ),
)
_BY_NAME = {tool.name: tool for tool in FS_TOOLS}


def call_fs_tool(root: ConfinedRoot, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Validate ``arguments`` against the tool's schema and run it."""
    tool = _BY_NAME.get(name)
    if tool is None:
        raise UnknownTool(f"No tool '{name}' on the fs server", tool=name)
    validate_arguments(tool.input_schema, arguments)
    try:
        return tool.handler(root, **arguments)
    except OSError as exc:  # never an OSError's text: it may name a file by its real path
        path = str(arguments.get("path") or arguments.get("source") or "")
        raise os_error(path, exc) from None


async def call_fs_tool_async(
    root: ConfinedRoot, name: str, arguments: dict[str, Any]
) -> dict[str, Any]:
    """:func:`call_fs_tool` in a worker thread (the filesystem calls block)."""
    return await anyio.to_thread.run_sync(functools.partial(call_fs_tool, root, name, arguments))
