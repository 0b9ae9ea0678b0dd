"""Pure logic of the fs sandbox: path parsing, messages, glob translation, argument checks."""

from __future__ import annotations

import pytest

from mcpexec.errors import McpexecError
from mcpexec.gateway.errors import (
    InvalidArguments,
    InvalidPath,
    PathOutsideSandbox,
    PathRefused,
    show_path,
)
from mcpexec.gateway.fs_search import glob_regex
from mcpexec.gateway.fs_tools import FS_TOOLS
from mcpexec.gateway.fs_validate import validate_arguments
from mcpexec.gateway.paths import NAME_MAX, split_path

FORMS = (("srv", "box"), ("data", "real", "box"))


def names(path: str) -> tuple[str, ...]:
    return split_path(path, FORMS)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("", ()),
        (".", ()),
        ("a.txt", ("a.txt",)),
        ("./a//b/./c", ("a", "b", "c")),
        ("a/../b", ("b",)),
        ("a/b/../../c", ("c",)),
        ("/srv/box", ()),
        ("/srv/box/", ()),
        ("/srv/box/a/b", ("a", "b")),
        ("//srv//./box/a", ("a",)),
        ("/data/real/box/a", ("a",)),  # the kernel's form of the root, too
        ("/srv/box/a/../b", ("b",)),
        ("~/x", ("~", "x")),  # no home expansion
        ("..\\etc", ("..\\etc",)),  # a backslash is part of a name on Linux
        ("日本語/ñandú.txt", ("日本語", "ñandú.txt")),
        ("x" * NAME_MAX, ("x" * NAME_MAX,)),
    ],
)
def test_paths_inside_become_plain_names(path: str, expected: tuple[str, ...]) -> None:
    assert names(path) == expected


@pytest.mark.parametrize(
    "path",
    [
        "..",
        "../x",
        "../../etc/passwd",
        "a/../../x",
        "a/b/../../../x",
        "/etc/passwd",
        "/",
        "/srv",
        "/srv/box_evil/x",  # CVE-2025-53110: a sibling whose name starts with the root's
        "/srv/boxes",
        "/srv/box/../box/x",  # literal components after the root: the `..` climbs out
        "/srv/box/..",
        "/data/real/box2",
        "srv/box/../../../etc",
    ],
)
def test_escapes_are_outside_the_sandbox(path: str) -> None:
    with pytest.raises(PathOutsideSandbox) as err:
        names(path)
    assert err.value.code == "path_outside_sandbox"
    assert (
        err.value.message == f"Path validation failed: Path '{path}' is outside sandbox directory"
    )


def test_the_seed_message_is_exact() -> None:
    with pytest.raises(McpexecError) as err:
        names("/etc/passwd")
    assert (
        str(err.value) == "Path validation failed: Path '/etc/passwd' is outside sandbox directory"
    )
    assert err.value.to_dict()["code"] == "path_outside_sandbox"
    assert err.value.http_status == 403


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("a\x00b", "contains a NUL byte"),
        ("a.txt\x00.png", "contains a NUL byte"),
        ("a/" * 2500, "is too long (5000 bytes; the limit is 4095)"),
        ("é" * 2048, "is too long (4096 bytes"),
        ("x" * 300, f"has a component longer than {NAME_MAX} bytes"),
        ("a/" + "é" * 128, "has a component longer than"),  # 256 bytes, 128 characters
        ("\ud800.txt", "unencodable"),
    ],
)
def test_invalid_paths(path: str, fragment: str) -> None:
    with pytest.raises(InvalidPath) as err:
        names(path)
    assert err.value.code == "invalid_path"
    assert err.value.message.startswith("Path validation failed: Path '")
    assert fragment in err.value.message


def test_messages_show_the_path_bounded_and_escaped() -> None:
    assert show_path("a\x00b\nc") == "a\\x00b\\nc"
    long = show_path("a" * 5000)
    assert len(long) < 260
    assert long.endswith("(5000 characters)")
    with pytest.raises(InvalidPath) as err:
        names("a/" * 2500)
    assert len(err.value.message) < 400


def test_refusals_share_a_base_class() -> None:
    assert issubclass(PathOutsideSandbox, PathRefused)
    assert issubclass(InvalidPath, PathRefused)
    assert issubclass(PathRefused, McpexecError)


@pytest.mark.parametrize(
    ("pattern", "hits", "misses"),
    [
        ("*.txt", ["a.txt"], ["d/a.txt", "a.txt.bak"]),
        ("**/*.txt", ["a.txt", "d/a.txt", "d/e/a.txt"], ["a.py"]),
        ("d/*", ["d/a", "d/b.txt"], ["d/e/a", "x/a"]),
        ("d/**", ["d/a", "d/e/a"], ["x/a"]),
        ("?.md", ["a.md"], ["ab.md", "/.md"]),
        ("[ab].c", ["a.c", "b.c"], ["c.c"]),
        ("[!a].c", ["b.c"], ["a.c"]),
        ("a+b(1).txt", ["a+b(1).txt"], ["aab1.txt"]),
        ("[", ["["], ["a"]),
    ],
)
def test_glob_regex(pattern: str, hits: list[str], misses: list[str]) -> None:
    regex = glob_regex(pattern)
    for hit in hits:
        assert regex.match(hit), hit
    for miss in misses:
        assert not regex.match(miss), miss


def test_glob_patterns_are_bounded() -> None:
    with pytest.raises(InvalidArguments, match="pattern"):
        glob_regex("*" * 17)
    with pytest.raises(InvalidArguments, match="pattern"):
        glob_regex("a" * 513)


SCHEMAS = {tool.name: tool.input_schema for tool in FS_TOOLS}


@pytest.mark.parametrize(
    ("tool", "arguments", "field"),
    [
        ("read_text_file", {}, "path"),
        ("read_text_file", {"path": 3}, "path"),
        ("read_text_file", {"path": "a", "head": -1}, "head"),
        ("read_text_file", {"path": "a", "head": True}, "head"),
        ("read_text_file", {"path": "a", "extra": 1}, "extra"),
        ("write_file", {"path": "a"}, "content"),
        ("write_file", {"path": "a", "content": "x", "encoding": "latin-1"}, "encoding"),
        ("move_file", {"source": "a"}, "destination"),
        ("search_files", {"path": ".", "pattern": ""}, "pattern"),
        (
            "search_files",
            {"path": ".", "pattern": "*", "excludePatterns": [1]},
            "excludePatterns[0]",
        ),
        ("search_files", {"path": ".", "pattern": "*", "maxResults": 0}, "maxResults"),
    ],
)
def test_arguments_are_checked_naming_the_field(
    tool: str, arguments: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidArguments) as err:
        validate_arguments(SCHEMAS[tool], arguments)
    assert err.value.code == "invalid_arguments"
    assert err.value.details["field"] == field
    assert err.value.message.startswith(f"{field}: ")


def test_every_tool_has_an_object_schema() -> None:
    assert sorted(SCHEMAS) == sorted(
        [
            "read_text_file",
            "read_file",
            "write_file",
            "list_directory",
            "create_directory",
            "move_file",
            "search_files",
            "get_file_info",
        ]
    )
    for schema in SCHEMAS.values():
        assert schema["type"] == "object"
        assert schema["additionalProperties"] is False
        assert set(schema["required"]) <= set(schema["properties"])


def test_gateway_imports_only_models_and_errors() -> None:
    """The plug-in rule: gateway/* may import mcpexec.models and mcpexec.errors, nothing else."""
    import ast
    from pathlib import Path

    import mcpexec.gateway

    allowed = {"mcpexec.models", "mcpexec.errors"}
    for source in Path(mcpexec.gateway.__file__).parent.glob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.startswith("mcpexec") and not name.startswith("mcpexec.gateway"):
                    assert name in allowed, f"{source.name} imports {name}"
