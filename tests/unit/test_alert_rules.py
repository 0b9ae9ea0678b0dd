"""Alert rules and webhook targets as pure decisions (issue 17): each rule kind's findings, the
config's TOML ``[[alerts]]`` tables, the allowlist's address classes, the signature."""

from __future__ import annotations

import ipaddress
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mcpexec import alert_rules as r
from mcpexec.alert_rules import AlertRule, RunningRun
from mcpexec.alerts import degradations
from mcpexec.errors import ConfigError
from mcpexec.settings import load_settings
from mcpexec.webhooks import Allowlist, sign, verify

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def rule(**fields: object) -> AlertRule:
    return AlertRule.model_validate({"name": "r", **fields})


def test_failure_rate_needs_enough_runs_and_a_rate_above_the_threshold() -> None:
    counts = {("acme", ""): (1, 3), ("beta", ""): (1, 1), ("tiny", ""): (0, 1)}
    found = r.failure_rate(rule(kind="failure_rate", threshold=0.5, min_runs=2), counts)
    assert [(f.subject, f.value) for f in found] == [("acme", 0.75)]  # 50% is not above
    assert "3 of 4 runs of tenant acme failed" in found[0].message
    by_task = rule(kind="failure_rate", by="task", threshold=0.1, min_runs=1)
    assert [f.subject for f in r.failure_rate(by_task, {("acme", "etl"): (0, 1)})] == ["acme/etl"]


def test_queue_age_overdue_and_no_worker() -> None:
    oldest = {"acme": NOW - timedelta(seconds=301), "beta": NOW - timedelta(seconds=10)}
    assert [f.subject for f in r.queue_age(rule(kind="queue_age", age_s=300), oldest, NOW)] == [
        "acme"
    ]
    running = [
        RunningRun("slow", "acme", "etl", NOW - timedelta(seconds=31), 10_000),
        RunningRun("fine", "acme", "etl", NOW - timedelta(seconds=29), 10_000),
    ]
    found = r.run_overdue(rule(kind="run_overdue", factor=3), running, NOW)
    assert [(f.subject, f.tenant) for f in found] == [("slow", "acme")]
    assert r.no_worker(1) == []
    assert [f.subject for f in r.no_worker(0)] == [""]


def test_schedule_missed_fires_while_the_count_grows_within_the_window() -> None:
    missed_rule = rule(kind="schedule_missed", window_s=60)
    found, seen = r.schedule_missed(missed_rule, {"s1": ("acme", 5)}, {}, NOW)
    assert found == []  # the first sight is the baseline: old misses do not fire
    found, seen = r.schedule_missed(missed_rule, {"s1": ("acme", 7)}, seen, NOW)
    assert [(f.subject, f.value) for f in found] == [("s1", 7.0)]
    later = NOW + timedelta(seconds=30)
    found, seen = r.schedule_missed(missed_rule, {"s1": ("acme", 7)}, seen, later)
    assert [f.subject for f in found] == ["s1"]  # still within the window
    found, _ = r.schedule_missed(
        missed_rule, {"s1": ("acme", 7)}, seen, NOW + timedelta(seconds=60)
    )
    assert found == []


def test_sandbox_degradations_are_read_from_the_recorded_isolation() -> None:
    assert degradations("none (sandbox disabled)") == ["no sandbox"]
    assert degradations("bwrap(default) uid=65534 NO-seccomp memory=rlimit pids=cgroup") == [
        "no seccomp filter",
        "no memory cgroup",
    ]
    assert degradations("bwrap(strict) seccomp memory=cgroup pids=cgroup") == []
    found = r.sandbox_degraded(rule(kind="sandbox_degraded"), {"no seccomp filter": 3})
    assert [(f.subject, f.value) for f in found] == [("no seccomp filter", 3.0)]


def test_alert_rules_come_from_the_toml_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        'webhook_allow = ["hooks.example.com", "10.0.0.0/8"]\n'
        "[[alerts]]\n"
        'name = "etl"\nkind = "failure_rate"\nby = "task"\nthreshold = 0.2\n'
        'webhook = "https://hooks.example.com/alerts"\n'
        "[[alerts]]\n"
        'name = "workers"\nkind = "no_worker"\n'
    )
    monkeypatch.setenv("MCPEXEC_CONFIG", str(config))
    monkeypatch.setenv("MCPEXEC_HOME", str(tmp_path))
    settings = load_settings()
    assert [(a.name, a.kind) for a in settings.alerts] == [
        ("etl", "failure_rate"),
        ("workers", "no_worker"),
    ]
    assert settings.alerts[0].threshold == 0.2
    assert settings.webhook_allow == ["hooks.example.com", "10.0.0.0/8"]
    config.write_text('[[alerts]]\nname = "x"\nkind = "cpu_hot"\n')
    with pytest.raises(ConfigError, match="alerts"):
        load_settings()


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("10.1.2.3", False),
        ("192.168.1.1", False),
        ("172.16.0.1", False),
        ("169.254.169.254", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::ffff:127.0.0.1", False),
    ],
)
def test_only_public_addresses_unless_allowed(address: str, allowed: bool) -> None:
    ip = ipaddress.ip_address(address)
    assert Allowlist(["*"]).address_allowed(ip) is allowed
    assert Allowlist(["*", "0.0.0.0/0", "::/0"]).address_allowed(ip)


def test_host_entries() -> None:
    allow = Allowlist(["hooks.example.com", "*.corp.example", "10.0.0.0/8"])
    assert allow.host_allowed("hooks.example.com")
    assert allow.host_allowed("a.b.corp.example")
    assert not allow.host_allowed("corp.example.evil")
    assert not allow.host_allowed("example.com")
    assert allow.host_allowed("10.2.3.4")
    assert not allow.host_allowed("11.2.3.4")


def test_the_signature_covers_the_timestamp_and_the_body() -> None:
    now = int(time.time())
    header = sign("k", now, b'{"a":1}')
    assert header.startswith(f"t={now},v1=")
    assert verify("k", header, b'{"a":1}')
    assert not verify("k", header, b'{"a":2}')
    assert not verify("k", header.replace(f"t={now}", f"t={now + 1}"), b'{"a":1}')
    assert not verify("k", sign("k", now - 3600, b"{}"), b"{}")  # too old
