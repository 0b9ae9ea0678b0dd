"""The gateway's pure parts: config files (both shapes, secrets, problems, diffs), the
catalog's names and collisions, argument checks against real schemas, and output caps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcpexec.gateway.catalog import Catalog, CatalogTool, allowed, validate_arguments
from mcpexec.gateway.config import diff_configs, load_config, parse_config
from mcpexec.gateway.errors import GatewayConfigError, InvalidArguments, UnknownTool
from mcpexec.gateway.results import capped


def test_mcp_servers_shape_stdio_and_http() -> None:
    config = parse_config(
        {
            "mcpServers": {
                "files": {"command": "npx", "args": ["-y", "pkg", "/tmp"], "env": {"A": "1"}},
                "remote": {"type": "http", "url": "https://x.test/mcp", "headers": {"K": "v"}},
                "shttp": {"type": "streamable-http", "url": "http://127.0.0.1:1/mcp"},
            }
        },
        "mcp.json",
    )
    assert config.problems == ()
    files, remote = config.servers["files"], config.servers["remote"]
    assert (files.transport, files.command, files.args) == ("stdio", "npx", ("-y", "pkg", "/tmp"))
    assert (files.timeout_s, files.max_concurrency, files.processes) == (60.0, 8, 1)
    assert not files.eager
    assert (remote.transport, remote.headers) == ("http", {"K": "v"})
    assert config.servers["shttp"].transport == "http"


def test_seed_shape_with_options() -> None:
    config = parse_config(
        {
            "servers": [
                {"name": "filesystem", "command": "npx", "args": [], "env": {}, "timeout": 30},
                {
                    "name": "t",
                    "command": "x",
                    "tools": {"allow": ["get_*"], "deny": ["get_secret"]},
                    "start": "eager",
                    "processes": 3,
                    "network": True,
                    "enabled": False,
                },
            ]
        },
        "seed.json",
    )
    assert config.problems == ()
    assert config.servers["filesystem"].timeout_s == 30
    t = config.servers["t"]
    assert (t.tools_allow, t.tools_deny, t.eager, t.processes) == (
        ("get_*",),
        ("get_secret",),
        True,
        3,
    )
    assert t.network
    assert not t.enabled


def test_secrets_come_only_from_the_mapping_and_never_show() -> None:
    data = {"mcpServers": {"a": {"command": "x", "env": {"TOKEN": "${API_TOKEN}"}}}}
    good = parse_config(data, "f.json", {"API_TOKEN": "hunter2"})
    assert good.servers["a"].env == {"TOKEN": "hunter2"}
    assert "hunter2" not in repr(good.servers["a"])
    bad = parse_config(data, "f.json", {})  # the process environment is never consulted
    [problem] = bad.problems
    assert (problem.file, problem.server, problem.field) == ("f.json", "a", "env.TOKEN")
    assert "API_TOKEN" in problem.message
    error = problem.error()
    assert error.code == "gateway_config_invalid"
    assert error.details == {"file": "f.json", "server": "a", "field": "env.TOKEN"}


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({}, "command"),
        ({"command": "x", "args": "notalist"}, "args"),
        ({"command": "x", "timeout_s": -1}, "timeout_s"),
        ({"command": "x", "timeout": "soon"}, "timeout"),
        ({"command": "x", "max_concurrency": 0}, "max_concurrency"),
        ({"command": "x", "processes": 1.5}, "processes"),
        ({"command": "x", "start": "sometimes"}, "start"),
        ({"command": "x", "tools": {"allow": "x"}}, "tools.allow"),
        ({"command": "x", "bogus": 1}, "bogus"),
        ({"type": "http", "url": "ftp://x"}, "url"),
        ({"type": "carrier-pigeon"}, "type"),
        ({"command": "x", "env": {"A": ["no"]}}, "env.A"),
    ],
)
def test_one_bad_entry_is_a_problem_the_others_load(entry: dict[str, object], field: str) -> None:
    config = parse_config({"mcpServers": {"bad": entry, "good": {"command": "ok"}}}, "c.json")
    assert list(config.servers) == ["good"]
    [problem] = config.problems
    assert (problem.server, problem.field) == ("bad", field)


def test_reserved_and_duplicate_names() -> None:
    config = parse_config(
        {"mcpServers": {"fs": {"command": "x"}}, "servers": [{"name": "fs2", "command": "y"}]},
        "c.json",
    )
    assert list(config.servers) == ["fs2"]
    assert config.problems[0].field == "name"


def test_load_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(GatewayConfigError, match="cannot be read"):
        load_config(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(GatewayConfigError, match="not valid JSON") as caught:
        load_config(broken)
    assert caught.value.details["file"] == str(broken)
    good = tmp_path / "mcp_servers.json"
    good.write_text(json.dumps({"servers": [{"name": "a", "command": "x"}]}))
    assert list(load_config(good).servers) == ["a"]


def test_diff_for_reload() -> None:
    old = parse_config({"mcpServers": {"a": {"command": "x"}, "b": {"command": "y"}}}, "1")
    new = parse_config(
        {"mcpServers": {"a": {"command": "x"}, "b": {"command": "y2"}, "c": {"command": "z"}}},
        "2",
    )
    diff = diff_configs(old, new)
    assert (diff.added, diff.removed, diff.changed, diff.unchanged) == (("c",), (), ("b",), ("a",))


def _tool(server: str, name: str, schema: dict[str, object] | None = None) -> CatalogTool:
    return CatalogTool(server, name, input_schema=schema or {"type": "object"})


def test_catalog_names_and_deterministic_collisions() -> None:
    tools = [_tool("b", "search"), _tool("a", "search"), _tool("a", "only_a")]
    for order in (tools, list(reversed(tools))):
        catalog = Catalog(order)
        assert [t.qualified for t in catalog.tools()] == ["a.only_a", "a.search", "b.search"]
        assert catalog.resolve("only_a").qualified == "a.only_a"
        assert catalog.resolve("b.search").server == "b"
        assert catalog.resolve("search", server="b").server == "b"
        [collision] = catalog.collisions
        assert (collision.name, collision.servers) == ("search", ("a", "b"))
        with pytest.raises(UnknownTool, match=r"a\.search, b\.search"):
            catalog.resolve("search")


def test_allow_and_deny_globs() -> None:
    assert allowed("get_time", ["get_*"], [])
    assert not allowed("set_time", ["get_*"], [])
    assert not allowed("get_secret", None, ["*secret*"])
    assert allowed("anything", None, [])


def test_arguments_checked_with_a_real_validator() -> None:
    schema = {
        "type": "object",
        "$defs": {"point": {"type": "object", "properties": {"x": {"type": "number"}}}},
        "properties": {
            "where": {"$ref": "#/$defs/point"},
            "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "bag": {"type": "array"},  # no items: anything goes
            "nested": {"type": "object", "properties": {"deep": {"type": "boolean"}}},
        },
        "required": ["either"],
        "additionalProperties": False,
    }
    tool = _tool("s", "t", schema)
    validate_arguments(tool, {"either": 3, "where": {"x": 1.5}, "bag": [1, "a", None]})
    cases = [
        ({}, "either"),
        ({"either": 1.5}, "either"),
        ({"either": 1, "where": {"x": "far"}}, "where.x"),
        ({"either": 1, "nested": {"deep": "yes"}}, "nested.deep"),
        ({"either": 1, "extra": 1}, "extra"),
    ]
    for arguments, field in cases:
        with pytest.raises(InvalidArguments) as caught:
            validate_arguments(tool, arguments)
        assert caught.value.details["field"] == field, arguments
    with pytest.raises(InvalidArguments):
        validate_arguments(tool, ["not", "an", "object"])
    # A schema the validator cannot use is the server's business, not a crash.
    validate_arguments(_tool("s", "broken", {"type": "object", "$ref": "#/nowhere"}), {})


def test_caps_cut_text_and_say_so() -> None:
    small = capped("s", "t", [{"type": "text", "text": "hi"}], {"a": 1}, False, 1000)
    assert not small.truncated
    big = capped("s", "t", [{"type": "text", "text": "é" * 5000}], {"big": "x" * 5000}, False, 2000)
    assert big.truncated
    assert big.structured is None
    assert big.content[-1]["text"].startswith("[output truncated by mcpexec")
    assert len(json.dumps(big.content, ensure_ascii=False).encode()) <= 2000
    assert big.content[0]["text"]
    assert set(big.content[0]["text"]) == {"é"}  # cut on a character, not inside one


def test_sandbox_keys() -> None:
    from mcpexec.gateway.sandbox import sandboxed_argv

    config = parse_config(
        {
            "mcpServers": {
                "s": {
                    "command": "node",
                    "args": ["/srv/x.js"],
                    "sandbox": True,
                    "read_only": ["/srv", "${DIR}"],
                    "writable": ["/data"],
                    "cwd": "/data/work",
                },
                "bad": {"command": "x", "sandbox": True, "writable": ["relative"]},
                "dots": {"command": "x", "read_only": ["/a/../etc"]},
            }
        },
        "mcp.json",
        {"DIR": "/opt/tools"},
    )
    assert {(p.server, p.field) for p in config.problems} == {
        ("bad", "writable[0]"),
        ("dots", "read_only[0]"),
    }
    server = config.servers["s"]
    assert (server.sandbox, server.read_only, server.writable) == (
        True,
        ("/srv", "/opt/tools"),
        ("/data",),
    )
    argv = sandboxed_argv(server, ["node", "/srv/x.js"], "/usr/bin/bwrap")
    assert argv[:2] == ["/usr/bin/bwrap", "--unshare-all"]
    assert "--share-net" not in argv
    assert argv[argv.index("--chdir") + 1] == "/data/work"
    assert argv[-3:] == ["--", "node", "/srv/x.js"]
    joined = " ".join(argv)
    assert "--ro-bind /opt/tools /opt/tools" in joined
    assert "--bind /data /data" in joined

    # Run by root: bwrap privileged without a user namespace, setpriv drops before the server.
    dropped = sandboxed_argv(
        server, ["node", "/srv/x.js"], "/usr/bin/bwrap", drop_to=(65534, 65533),
        setpriv="/usr/bin/setpriv",
    )  # fmt: skip
    assert "--unshare-all" not in dropped
    assert "--unshare-user" not in " ".join(dropped)
    assert {"--unshare-pid", "--unshare-ipc", "--unshare-net"} <= set(dropped)
    end = dropped.index("--")
    assert dropped[end + 1 :] == [
        "/usr/bin/setpriv", "--reuid=65534", "--regid=65533", "--clear-groups",
        "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--", "node", "/srv/x.js",
    ]  # fmt: skip
    dirs = [i for i, a in enumerate(dropped) if a == "--dir"]
    assert [dropped[i + 1] for i in dirs] == ["/etc", "/opt"]  # the binds' parents, walkable
    assert all(dropped[i - 2 : i] == ["--perms", "0755"] for i in dirs)
    assert dropped.index("--dir") > dropped.index("--tmpfs")  # not hidden by the tmpfs
    assert max(i for i, a in enumerate(dropped) if a == "--dir") < dropped.index("--ro-bind-try")


def test_sandbox_is_tristate_and_limits_are_checked_per_field() -> None:
    from mcpexec.gateway.config import ServerLimits

    config = parse_config(
        {
            "mcpServers": {
                "default": {"command": "x"},
                "off": {"command": "x", "sandbox": False},
                "limited": {"command": "x", "limits": {"memory_mb": 256, "pids": 32}},
                "files": {"command": "x", "limits": {"open_files": 128}},
                "unknown": {"command": "x", "limits": {"cpu_s": 5}},
                "small": {"command": "x", "limits": {"memory_mb": 8}},
                "typed": {"command": "x", "limits": {"pids": "64"}},
                "flag": {"command": "x", "limits": {"pids": True}},
                "shape": {"command": "x", "limits": [256]},
                "yes": {"command": "x", "sandbox": "yes"},
            }
        },
        "mcp.json",
    )
    problems = {p.server: (p.field, str(p.error())) for p in config.problems}
    assert {name: field for name, (field, _) in problems.items()} == {
        "unknown": "limits.cpu_s",
        "small": "limits.memory_mb",
        "typed": "limits.pids",
        "flag": "limits.pids",
        "shape": "limits",
        "yes": "sandbox",
    }
    assert problems["small"][1] == (
        "mcp.json: server 'small', limits.memory_mb: must be an integer from 16 to 1048576"
    )
    assert "memory_mb, pids, open_files" in problems["unknown"][1]
    servers = config.servers
    assert servers["default"].sandbox is None  # the Gateway's sandbox_default decides
    assert servers["off"].sandbox is False
    assert servers["limited"].limits == ServerLimits(memory_mb=256, pids=32)
    assert servers["files"].limits.to_dict() == {"open_files": 128}
    assert servers["default"].limits == ServerLimits()


def test_strict_sandbox_refuses_opt_outs_and_network() -> None:
    from mcpexec.tools_service import _apply_sandbox_policy

    config = parse_config(
        {
            "mcpServers": {
                "boxed": {"command": "x"},
                "off": {"command": "x", "sandbox": False},
                "net": {"command": "x", "network": True},
                "remote": {"type": "http", "url": "https://x.test/mcp"},
            }
        },
        "mcp.json",
    )
    assert _apply_sandbox_policy(config, "default") is config
    strict = _apply_sandbox_policy(config, "strict")
    assert set(strict.servers) == {"boxed", "remote"}
    assert {(p.server, p.field) for p in strict.problems} == {
        ("off", "sandbox"),
        ("net", "network"),
    }
    assert "MCPEXEC_SANDBOX=strict" in str(strict.problems[0].error())


def test_small_text_results_skip_the_measuring_dump_but_not_the_cap() -> None:
    small = capped("s", "t", [{"type": "text", "text": "Echo: hi"}], None, False, 1000)
    assert (small.truncated, small.content) == (False, [{"type": "text", "text": "Echo: hi"}])
    assert small.size >= len('[{"type":"text","text":"Echo: hi"}]')  # an upper bound
    # Near the limit the bound does not prove it fits: measured exactly, cut where needed.
    near = capped("s", "t", [{"type": "text", "text": "x" * 300}], None, False, 1000)
    assert (near.truncated, near.size) == (
        False,
        len(json.dumps([{"type": "text", "text": "x" * 300}], separators=(",", ":"))),
    )
    over = capped("s", "t", [{"type": "text", "text": "é" * 2000}], None, False, 1000)
    assert over.truncated
    assert over.content[-1]["text"].startswith("[output truncated by mcpexec")
    # Any other block shape is measured.
    image = capped(
        "s", "t", [{"type": "image", "data": "AAAA", "mimeType": "image/png"}], None, False, 1000
    )
    assert image.size == len(json.dumps(image.content, separators=(",", ":")))


def test_the_sandbox_as_the_cli_and_dashboard_show_it() -> None:
    from mcpexec.cli_tools import _limits_text, _sandbox_text
    from mcpexec.dashboard.pages.servers import _sandbox

    boxed = {"sandbox": True, "sandbox_from": "default", "network": False,
             "limits": {"memory_mb": 1024, "memory_by": "cgroup-v1", "pids": 256,
                        "pids_by": "cgroup-v2", "open_files": 64}}  # fmt: skip
    netted = {**boxed, "network": True}
    loose = {"sandbox": False, "sandbox_from": "config", "network": False, "limits": None}
    remote = {"sandbox": None, "limits": None}
    dropped = {**boxed, "limits": {"memory_mb": 1024, "memory_by": "cgroup-v1", "pids": 256,
                                   "pids_by": "cgroup-v2", "open_files": 64,
                                   "seccomp": "denylist", "uid": 65534, "gid": 65533}}  # fmt: skip
    assert [_sandbox_text(s) for s in (boxed, netted, loose, remote)] == [
        "bwrap", "bwrap+net", "OFF (config)", "-",
    ]  # fmt: skip
    assert _limits_text(boxed) == (
        "memory_mb=1024 (cgroup-v1), pids=256 (cgroup-v2), open_files=64"
    )
    assert _limits_text(dropped) == (
        "memory_mb=1024 (cgroup-v1), pids=256 (cgroup-v2), open_files=64, seccomp=denylist, "
        "uid=65534:65533"
    )
    assert _limits_text(loose) == "-"
    assert [_sandbox(s) for s in (boxed, netted, loose, remote, dropped)] == [
        "bwrap, 1024 MB", "bwrap+net, 1024 MB", "OFF (config)", "-", "bwrap, 1024 MB, uid 65534",
    ]  # fmt: skip


def test_unwritable_reads_the_mode_bits_for_the_sandbox_user(tmp_path: Path) -> None:
    import os

    from mcpexec.gateway.sandbox import unwritable

    me, group = os.getuid(), os.getgid()
    other = me + 1 if me != 65534 else 65533
    own, shared, world, closed = (tmp_path / n for n in ("own", "shared", "world", "closed"))
    for path, mode in ((own, 0o700), (shared, 0o770), (world, 0o777), (closed, 0o755)):
        path.mkdir()
        path.chmod(mode)
    paths = [str(p) for p in (own, shared, world, closed, tmp_path / "missing")]
    assert unwritable(paths, me, group) == []  # the owner's bit (root is no exception here)
    assert unwritable(paths, other, group) == [str(own), str(closed)]  # the group's bit
    assert unwritable(paths, other, group + 1) == [str(own), str(shared), str(closed)]
