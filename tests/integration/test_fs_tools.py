"""The fs tools on real files: results, size caps, bounds, atomic writes, no-replace moves."""

from __future__ import annotations

import base64
import contextlib
import errno
import os
from pathlib import Path

import pytest

from mcpexec.errors import McpexecError
from mcpexec.gateway import ConfinedRoot, FsLimits, _linux, call_fs_tool, call_fs_tool_async

from .fs_fixtures import RESOLVERS, Box, build_box, sandbox

__all__ = ["sandbox"]


def call(box: Box, tool: str, **args: object) -> dict[str, object]:
    return call_fs_tool(box.root, tool, dict(args))


def refused(box: Box, tool: str, **args: object) -> McpexecError:
    with pytest.raises(McpexecError) as err:
        call(box, tool, **args)
    return err.value


@pytest.fixture(params=RESOLVERS)
def small(request: pytest.FixtureRequest, tmp_path: Path) -> Box:
    limits = FsLimits(
        max_read_bytes=1000,
        max_write_bytes=1000,
        max_list_entries=5,
        max_search_results=3,
        max_search_depth=2,
        max_search_visits=50,
    )
    return build_box(tmp_path, request.param, limits)


def test_auto_picks_openat2_where_the_kernel_has_it(tmp_path: Path) -> None:
    with ConfinedRoot(tmp_path) as root:
        assert root.resolver == ("openat2" if _linux.openat2_available() else "walk")
    with ConfinedRoot(tmp_path, resolver="walk") as root:
        assert root.resolver == "walk"


def test_a_missing_root_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(McpexecError) as err:
        ConfinedRoot(tmp_path / "nope")
    assert err.value.code == "path_not_found"


def test_read_text_file_head_and_tail(sandbox: Box) -> None:
    (sandbox.box / "lines.txt").write_text("".join(f"line {i}\n" for i in range(1, 101)))
    assert call(sandbox, "read_text_file", path="lines.txt", head=2)["content"] == (
        "line 1\nline 2\n"
    )
    assert call(sandbox, "read_text_file", path="lines.txt", tail=2)["content"] == (
        "line 99\nline 100\n"
    )
    assert call(sandbox, "read_text_file", path="lines.txt", tail=0)["content"] == ""
    everything = call(sandbox, "read_text_file", path="lines.txt", head=500)["content"]
    assert str(everything).count("\n") == 100
    err = refused(sandbox, "read_text_file", path="lines.txt", head=1, tail=1)
    assert err.code == "invalid_arguments"


def test_tail_of_a_file_without_final_newline(sandbox: Box) -> None:
    (sandbox.box / "t.txt").write_text("a\nb\nc")
    assert call(sandbox, "read_text_file", path="t.txt", tail=2)["content"] == "b\nc"


def test_read_file_text_and_binary(sandbox: Box) -> None:
    blob = bytes(range(256))
    (sandbox.box / "img.png").write_bytes(blob)
    got = call(sandbox, "read_file", path="img.png")
    assert got["encoding"] == "base64"
    assert got["mimeType"] == "image/png"
    assert base64.b64decode(str(got["content"])) == blob
    (sandbox.box / "data.bin").write_bytes(b"\xff\xfe\x00")
    assert call(sandbox, "read_file", path="data.bin")["encoding"] == "base64"
    text = call(sandbox, "read_file", path="hello.txt")
    assert text == {
        "path": "hello.txt",
        "content": "inside\n",
        "encoding": "utf-8",
        "mimeType": "text/plain",
        "size": 7,
    }


def test_write_file_is_atomic_and_keeps_the_mode(sandbox: Box) -> None:
    assert call(sandbox, "write_file", path="new.txt", content="one")["created"] is True
    assert (sandbox.box / "new.txt").stat().st_mode & 0o777 == 0o644
    os.chmod(sandbox.box / "new.txt", 0o600)
    before = (sandbox.box / "new.txt").stat().st_ino
    assert call(sandbox, "write_file", path="new.txt", content="two")["created"] is False
    after = sandbox.box / "new.txt"
    assert after.read_text() == "two"
    assert after.stat().st_mode & 0o777 == 0o600
    assert after.stat().st_ino != before  # replaced by rename, not rewritten in place
    assert not [p for p in os.listdir(sandbox.box) if p.startswith(".mcpexec-")]


def test_write_file_base64(sandbox: Box) -> None:
    data = bytes(range(256))
    content = base64.b64encode(data).decode()
    call(sandbox, "write_file", path="b.bin", content=content, encoding="base64")
    assert (sandbox.box / "b.bin").read_bytes() == data
    err = refused(sandbox, "write_file", path="b.bin", content="!!", encoding="base64")
    assert err.code == "invalid_arguments"
    err = refused(sandbox, "write_file", path="s.txt", content="lone \ud800 surrogate")
    assert err.code == "invalid_arguments"
    assert not (sandbox.box / "s.txt").exists()


def test_write_needs_an_existing_parent(sandbox: Box) -> None:
    assert refused(sandbox, "write_file", path="no/such/dir.txt", content="x").code == (
        "path_not_found"
    )


def test_list_directory_markers_and_symlinks_not_followed(sandbox: Box) -> None:
    got = call(sandbox, "list_directory", path=".")
    lines = str(got["text"]).splitlines()
    assert "[DIR] sub" in lines
    assert "[FILE] hello.txt" in lines
    assert "[LINK] linkdir" in lines
    assert "[LINK] dangle" in lines
    assert "[OTHER] fifo" in lines
    types = {e["name"]: e["type"] for e in got["entries"]}  # type: ignore[attr-defined]
    assert types["fifo"] == "fifo"
    assert types["sock"] == "socket"
    assert types["hard"] == "file"


def test_create_directory_parents_and_existing(sandbox: Box) -> None:
    assert call(sandbox, "create_directory", path="a/b/c")["created"] == ["a", "a/b", "a/b/c"]
    assert call(sandbox, "create_directory", path="a/b/c")["created"] == []
    assert (sandbox.box / "a" / "b" / "c").is_dir()
    assert refused(sandbox, "create_directory", path="hello.txt/x").code == "not_a_directory"


def test_move_file_never_replaces(sandbox: Box) -> None:
    call(sandbox, "move_file", source="hello.txt", destination="sub/moved.txt")
    assert (sandbox.box / "sub" / "moved.txt").read_text() == "inside\n"
    err = refused(sandbox, "move_file", source="sub/moved.txt", destination="sub/inner.txt")
    assert err.code == "path_exists"
    assert (sandbox.box / "sub" / "inner.txt").read_text() == "inner\n"
    assert refused(sandbox, "move_file", source="gone", destination="x").code == "path_not_found"
    err = refused(sandbox, "move_file", source="sub", destination="sub/deeper")
    assert err.code == "invalid_path"


def test_move_without_renameat2_links_files_and_refuses_directories(
    sandbox: Box, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_renameat2(*_: object) -> None:
        raise OSError(errno.ENOSYS, "not here")

    monkeypatch.setattr(_linux, "renameat2", no_renameat2)
    call(sandbox, "move_file", source="hello.txt", destination="moved.txt")
    assert not (sandbox.box / "hello.txt").exists()
    assert (sandbox.box / "moved.txt").read_text() == "inside\n"
    err = refused(sandbox, "move_file", source="moved.txt", destination="sub/inner.txt")
    assert err.code == "path_exists"
    assert refused(sandbox, "move_file", source="sub", destination="sub2").code == "fs_error"


def test_search_files_glob_exclude_no_symlinks(sandbox: Box) -> None:
    (sandbox.box / "sub" / "deep").mkdir()
    (sandbox.box / "sub" / "deep" / "x.txt").write_text("x")
    got = call(sandbox, "search_files", path=".", pattern="**/*.txt")
    assert got["matches"] == ["hello.txt", "sub/deep/x.txt", "sub/inner.txt"]
    assert got["truncated"] is False  # linkdir/secret.txt and sub/up/… are behind symlinks
    got = call(sandbox, "search_files", path="sub", pattern="**/*.txt", excludePatterns=["deep"])
    assert got["matches"] == ["sub/inner.txt"]
    got = call(sandbox, "search_files", path=str(sandbox.box), pattern="*.txt")
    assert got["matches"] == [f"{sandbox.box}/hello.txt"]  # written as the caller wrote it


def test_get_file_info(sandbox: Box) -> None:
    info = call(sandbox, "get_file_info", path="hello.txt")
    assert info["type"] == "file"
    assert info["size"] == 7
    assert info["permissions"] == "644"
    assert info["isFile"] is True
    assert info["isDirectory"] is False
    assert str(info["modified"]).endswith("Z")
    assert call(sandbox, "get_file_info", path=".")["type"] == "directory"
    assert call(sandbox, "get_file_info", path="fifo")["type"] == "fifo"  # described, not opened
    assert call(sandbox, "get_file_info", path="hard")["links"] == 2


def test_unknown_tool_and_bad_arguments(sandbox: Box) -> None:
    assert refused(sandbox, "delete_everything", path=".").code == "unknown_tool"
    err = refused(sandbox, "read_file", file="x")
    assert err.code == "invalid_arguments"
    assert err.details["field"] == "path"


def test_no_descriptor_leaks(sandbox: Box) -> None:
    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    calls: list[tuple[str, dict[str, object]]] = [
        ("read_text_file", {"path": "sub/inner.txt", "tail": 1}),
        ("read_file", {"path": "fifo"}),
        ("read_text_file", {"path": "linkdir/secret.txt"}),
        ("write_file", {"path": "sub/w.txt", "content": "w"}),
        ("write_file", {"path": "hard", "content": "w"}),
        ("list_directory", {"path": "sub"}),
        ("search_files", {"path": ".", "pattern": "**"}),
        ("create_directory", {"path": "sub/x/y"}),
        ("move_file", {"source": "sub/w.txt", "destination": "linkdir/w.txt"}),
        ("get_file_info", {"path": "sock"}),
    ]
    before = fds()
    for _ in range(50):
        for tool, args in calls:
            with contextlib.suppress(McpexecError):
                call_fs_tool(sandbox.root, tool, args)
    assert fds() == before


@pytest.mark.anyio
async def test_async_call(sandbox: Box) -> None:
    got = await call_fs_tool_async(sandbox.root, "read_text_file", {"path": "hello.txt"})
    assert got["content"] == "inside\n"


# -- size caps and bounds -------------------------------------------------------------------


def test_read_cap(small: Box) -> None:
    (small.box / "ok.txt").write_bytes(b"a" * 1000)
    (small.box / "big.txt").write_bytes(b"a" * 1001)
    assert len(str(call(small, "read_text_file", path="ok.txt")["content"])) == 1000
    for tool in ("read_text_file", "read_file"):
        err = refused(small, tool, path="big.txt")
        assert err.code == "file_too_large"
        assert err.details == {"path": "big.txt", "size": 1001, "limit": 1000}


def test_head_and_tail_read_only_what_they_need(small: Box) -> None:
    (small.box / "big.txt").write_bytes(b"x\n" * 100_000)
    assert call(small, "read_text_file", path="big.txt", head=3)["content"] == "x\nx\nx\n"
    assert call(small, "read_text_file", path="big.txt", tail=3)["content"] == "x\nx\nx\n"
    assert refused(small, "read_text_file", path="big.txt", head=1000).code == "file_too_large"
    assert refused(small, "read_text_file", path="big.txt", tail=1000).code == "file_too_large"


def test_write_cap(small: Box) -> None:
    call(small, "write_file", path="ok.txt", content="a" * 1000)
    assert refused(small, "write_file", path="big.txt", content="a" * 1001).code == (
        "file_too_large"
    )
    err = refused(small, "write_file", path="big.txt", content="é" * 501)  # 1002 bytes
    assert err.code == "file_too_large"
    big = base64.b64encode(b"a" * 1001).decode()
    err = refused(small, "write_file", path="big.txt", content=big, encoding="base64")
    assert err.code == "file_too_large"
    assert not (small.box / "big.txt").exists()
    assert not [p for p in os.listdir(small.box) if p.startswith(".mcpexec-")]


def test_list_and_search_bounds(small: Box) -> None:
    got = call(small, "list_directory", path=".")
    assert len(got["entries"]) == 5  # type: ignore[arg-type]
    assert got["truncated"] is True
    got = call(small, "search_files", path=".", pattern="**")
    assert len(got["matches"]) == 3  # type: ignore[arg-type]
    assert got["truncated"] is True
    (small.box / "sub" / "a" / "b").mkdir(parents=True)
    (small.box / "sub" / "a" / "b" / "deep.txt").write_text("x")
    got = call(small, "search_files", path=".", pattern="**/deep.txt")
    assert got["matches"] == []  # beyond max_search_depth
    assert got["truncated"] is True
    got = call(small, "search_files", path=".", pattern="**/deep.txt", maxDepth=99)
    assert got["matches"] == []  # capped by the server's limit, not the caller's
