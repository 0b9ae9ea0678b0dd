"""The path vectors: every way out of the sandbox we know of, against the real filesystem.

Each vector runs once per resolver (openat2 and the O_NOFOLLOW walk), in a thread joined with a
bound (a FIFO must never block a call). After each one the outside tree must be byte-for-byte
what it was, and no message may show the server's root unless the caller wrote it.
"""

from __future__ import annotations

import os
import stat
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from mcpexec.errors import McpexecError
from mcpexec.gateway import call_fs_tool

from .fs_fixtures import SECRET, Box, sandbox

__all__ = ["sandbox"]

OUT = "path_outside_sandbox"
INVALID = "invalid_path"
NOT_REG = "not_a_regular_file"
NOT_FOUND = "path_not_found"


@dataclass(frozen=True)
class Vector:
    id: str
    tool: str
    args: dict[str, str]  # "{tmp}" and "{box}" are replaced by the real paths
    expect: str  # an error code, or "ok"
    content: str | None = None  # for "ok" reads: the exact content
    not_created: tuple[str, ...] = field(default=())  # paths under tmp that must not exist


def read(path: str) -> dict[str, str]:
    return {"path": path}


VECTORS = [
    # `..` escapes
    Vector("dotdot", "read_text_file", read("../outside/secret.txt"), OUT),
    Vector("dotdot-etc-passwd", "read_text_file", read("../../etc/passwd"), OUT),
    Vector("dotdot-deep", "read_text_file", read("../" * 40 + "etc/passwd"), OUT),
    Vector("dotdot-after-subdir", "read_text_file", read("sub/../../outside/secret.txt"), OUT),
    Vector("dotdot-bare", "list_directory", read(".."), OUT),
    Vector("dotdot-inside-ok", "read_text_file", read("sub/../hello.txt"), "ok", "inside\n"),
    # absolute paths
    Vector("abs-etc-passwd", "read_text_file", read("/etc/passwd"), OUT),
    Vector("abs-slash", "list_directory", read("/"), OUT),
    Vector("abs-many-slashes", "read_text_file", read("////etc/passwd"), OUT),
    Vector("abs-outside-tmp", "read_text_file", read("{tmp}/outside/secret.txt"), OUT),
    Vector("abs-prefix-evil", "read_text_file", read("{tmp}/box_evil/x"), OUT),  # CVE-2025-53110
    Vector("rel-prefix-evil", "read_text_file", read("../box_evil/x"), OUT),
    Vector("abs-root-dotdot", "read_text_file", read("{box}/../outside/secret.txt"), OUT),
    Vector("abs-inside-ok", "read_text_file", read("{box}/hello.txt"), "ok", "inside\n"),
    Vector("abs-inside-dot-ok", "read_text_file", read("{box}/./sub/inner.txt"), "ok", "inner\n"),
    Vector("abs-parent-of-root", "list_directory", read("{tmp}"), OUT),
    # symlinks: final, mid-path, relative, inside, dangling, loops, devices
    Vector("symlink-final-out", "read_text_file", read("link_out"), OUT),
    Vector("symlink-final-out-read_file", "read_file", read("link_out"), OUT),
    Vector("symlink-mid-path-out", "read_text_file", read("linkdir/secret.txt"), OUT),
    Vector("symlink-mid-path-deeper", "read_text_file", read("sub/up/secret.txt"), OUT),
    Vector("symlink-relative-out", "read_text_file", read("rel_out"), OUT),
    Vector("symlink-inside-refused", "read_text_file", read("in_link"), OUT),
    Vector("symlink-loop", "read_text_file", read("loop1"), OUT),
    Vector("symlink-loop-mid-path", "read_text_file", read("loop1/x"), OUT),
    Vector("symlink-to-dev-null", "read_text_file", read("devnull"), OUT),
    Vector("symlink-info", "get_file_info", read("link_out"), OUT),
    Vector("symlink-list", "list_directory", read("linkdir"), OUT),
    Vector("symlink-list-mid", "list_directory", read("sub/up/dir"), OUT),
    Vector("symlink-search", "search_files", {"path": "linkdir", "pattern": "*"}, OUT),
    Vector(
        "dangling-written-through",
        "write_file",
        {"path": "dangle", "content": "x"},
        OUT,
        not_created=("outside/created-through-dangling.txt",),
    ),
    Vector(
        "symlink-dir-written-through",
        "write_file",
        {"path": "linkdir/new.txt", "content": "x"},
        OUT,
        not_created=("outside/dir/new.txt",),
    ),
    Vector(
        "symlink-final-written",
        "write_file",
        {"path": "link_out", "content": "pwned"},
        OUT,
    ),
    Vector(
        "mkdir-through-symlink",
        "create_directory",
        read("linkdir/newdir"),
        OUT,
        not_created=("outside/dir/newdir",),
    ),
    Vector(
        "mkdir-through-dangling",
        "create_directory",
        read("dangle_dir/x"),
        OUT,
        not_created=("outside/no-such-dir",),
    ),
    Vector(
        "move-into-symlinked-dir",
        "move_file",
        {"source": "hello.txt", "destination": "linkdir/moved.txt"},
        OUT,
        not_created=("outside/dir/moved.txt",),
    ),
    Vector("move-a-symlink", "move_file", {"source": "link_out", "destination": "x"}, OUT),
    # writes and moves that escape
    Vector(
        "write-dotdot",
        "write_file",
        {"path": "../outside/evil.txt", "content": "x"},
        OUT,
        not_created=("outside/evil.txt",),
    ),
    Vector(
        "write-abs-prefix-evil",
        "write_file",
        {"path": "{tmp}/box_evil/y", "content": "x"},
        OUT,
        not_created=("box_evil/y",),
    ),
    Vector(
        "mkdir-dotdot",
        "create_directory",
        read("../outside/newdir"),
        OUT,
        not_created=("outside/newdir",),
    ),
    Vector(
        "move-source-outside",
        "move_file",
        {"source": "../outside/secret.txt", "destination": "stolen.txt"},
        OUT,
    ),
    Vector(
        "move-destination-outside",
        "move_file",
        {"source": "hello.txt", "destination": "{tmp}/outside/moved.txt"},
        OUT,
        not_created=("outside/moved.txt",),
    ),
    # malformed paths
    Vector("nul-byte", "read_text_file", read("hello.txt\x00.png"), INVALID),
    Vector("nul-byte-write", "write_file", {"path": "a\x00b", "content": "x"}, INVALID),
    Vector("path-5000-chars", "read_text_file", read("a/" * 2500), INVALID),
    Vector("component-300-bytes", "read_text_file", read("x" * 300), INVALID),
    Vector("component-255-bytes-ok-missing", "read_text_file", read("x" * 255), NOT_FOUND),
    Vector("lone-surrogate", "read_text_file", read("\ud800.txt"), INVALID),
    Vector("percent-encoded", "read_text_file", read("..%2f..%2fetc%2fpasswd"), NOT_FOUND),
    Vector("backslashes", "read_text_file", read("..\\outside\\secret.txt"), NOT_FOUND),
    Vector("tilde", "read_text_file", read("~/secret.txt"), NOT_FOUND),
    Vector("file-as-directory", "read_text_file", read("hello.txt/x"), "not_a_directory"),
    Vector("write-the-root", "write_file", {"path": ".", "content": "x"}, INVALID),
    # not regular files
    Vector("fifo-read", "read_text_file", read("fifo"), NOT_REG),
    Vector("fifo-read_file", "read_file", read("fifo"), NOT_REG),
    Vector("fifo-write", "write_file", {"path": "fifo", "content": "x"}, NOT_REG),
    Vector("socket-read", "read_text_file", read("sock"), NOT_REG),
    Vector("directory-read", "read_text_file", read("sub"), NOT_REG),
    Vector("root-read", "read_file", read("."), NOT_REG),
    # hard links
    Vector(
        "hardlink-write", "write_file", {"path": "hard", "content": "pwned"}, "hard_link_refused"
    ),
    # unicode
    Vector("unicode-write", "write_file", {"path": "ñandú-日本.txt", "content": "ü"}, "ok"),
]


@pytest.mark.parametrize("vector", VECTORS, ids=[v.id for v in VECTORS])
def test_path_vector(sandbox: Box, vector: Vector) -> None:
    args: dict[str, Any] = {
        k: v.replace("{tmp}", str(sandbox.tmp)).replace("{box}", str(sandbox.box))
        for k, v in vector.args.items()
    }
    before = sandbox.outside_digest()
    outcome: list[object] = []

    def call() -> None:
        try:
            outcome.append(call_fs_tool(sandbox.root, vector.tool, args))
        except McpexecError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), f"{vector.id}: the call blocked"
    (result,) = outcome
    if vector.expect == "ok":
        assert isinstance(result, dict), result
        if vector.content is not None:
            assert result["content"] == vector.content
    else:
        assert isinstance(result, McpexecError), f"{vector.id}: not refused: {result}"
        assert result.code == vector.expect, result.to_dict()
        given = " ".join(args.values())
        if str(sandbox.box) not in given:
            assert str(sandbox.box) not in result.message
        assert SECRET not in result.message
    assert sandbox.outside_digest() == before, f"{vector.id}: the outside changed"
    for rel in vector.not_created:
        assert not os.path.lexists(sandbox.tmp / rel), f"{vector.id}: created {rel}"
    assert (sandbox.outside / "secret.txt").read_text() == SECRET


def test_the_seed_example_refusal(sandbox: Box) -> None:
    with pytest.raises(McpexecError) as err:
        call_fs_tool(sandbox.root, "read_text_file", {"path": "/etc/passwd"})
    assert err.value.message == (
        "Path validation failed: Path '/etc/passwd' is outside sandbox directory"
    )


def test_a_device_node_inside_is_not_opened(sandbox: Box) -> None:
    node = sandbox.box / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod needs CAP_MKNOD")
    for tool in ("read_text_file", "read_file", "write_file"):
        args = {"path": "null", "content": "x"} if tool == "write_file" else {"path": "null"}
        with pytest.raises(McpexecError) as err:
            call_fs_tool(sandbox.root, tool, args)
        assert err.value.code == NOT_REG
        assert "device" in err.value.message


def test_hard_links_are_refused_for_writes_even_inside(sandbox: Box) -> None:
    os.link(sandbox.box / "hello.txt", sandbox.box / "twin.txt")
    with pytest.raises(McpexecError) as err:
        call_fs_tool(sandbox.root, "write_file", {"path": "twin.txt", "content": "x"})
    assert err.value.code == "hard_link_refused"
    assert (sandbox.box / "hello.txt").read_text() == "inside\n"


def test_unicode_names_round_trip(sandbox: Box) -> None:
    call_fs_tool(sandbox.root, "create_directory", {"path": "日本語/ñ"})
    call_fs_tool(sandbox.root, "write_file", {"path": "日本語/ñ/é.txt", "content": "ü✓"})
    assert (sandbox.box / "日本語" / "ñ" / "é.txt").read_text() == "ü✓"
    got = call_fs_tool(sandbox.root, "read_text_file", {"path": "日本語/ñ/é.txt"})
    assert got["content"] == "ü✓"
    listing = call_fs_tool(sandbox.root, "list_directory", {"path": "日本語/ñ"})
    assert listing["text"] == "[FILE] é.txt"


def test_vector_count() -> None:
    per_resolver = len(VECTORS)
    print(f"fs path vectors: {per_resolver} per resolver, {2 * per_resolver} in all")
    assert per_resolver >= 60
