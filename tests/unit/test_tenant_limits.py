"""A tenant's runtime cap and resource limits on a run's spec (issue 10): the one rule every
submit applies (``tenant_ops.tenant_spec``) and the checks of the tenant's own settings."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mcpexec.errors import InvalidRequest
from mcpexec.models import ExecSpec, Limits
from mcpexec.store.base import TenantRecord
from mcpexec.tenant_ops import check_tenant_limits, tenant_spec

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CAPPED = TenantRecord(
    "data-team",
    T0,
    max_runtime_s=60,
    max_limits={"memory_mb": 2048, "pids": 64},
    default_limits={"memory_mb": 512, "cpu_s": 30},
)


def spec(**fields: object) -> ExecSpec:
    return ExecSpec.model_validate({"command": ["true"], **fields})


def test_no_timeout_gets_the_smaller_of_the_server_default_and_the_cap() -> None:
    assert tenant_spec(spec(), CAPPED, 3600).timeout_s == 60
    assert tenant_spec(spec(), CAPPED, 10).timeout_s == 10


def test_a_timeout_within_the_cap_is_kept_and_one_over_it_is_refused() -> None:
    assert tenant_spec(spec(timeout_s=60), CAPPED, 3600).timeout_s == 60
    with pytest.raises(InvalidRequest) as caught:
        tenant_spec(spec(timeout_s=61), CAPPED, 3600)
    assert caught.value.details["field"] == "timeout_s"
    assert "at most 60 s" in str(caught.value)
    assert "mcpexec tenants set data-team --max-runtime" in str(caught.value)


def test_a_limit_over_the_maximum_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidRequest) as caught:
        tenant_spec(spec(limits={"memory_mb": 4096}), CAPPED, 3600)
    assert caught.value.details["field"] == "limits.memory_mb"
    assert "at most 2048" in str(caught.value)
    with pytest.raises(InvalidRequest) as caught:
        tenant_spec(spec(limits={"pids": 65}), CAPPED, 3600)
    assert caught.value.details["field"] == "limits.pids"


def test_a_missing_limit_gets_the_default_else_the_maximum() -> None:
    limits = tenant_spec(spec(limits={"disk_mb": 5}), CAPPED, 3600).limits
    # memory_mb: the default; pids: no default, the maximum; cpu_s: a default without maximum;
    # disk_mb: given, no maximum of the tenant's own.
    assert limits == Limits(memory_mb=512, pids=64, cpu_s=30, disk_mb=5)
    assert tenant_spec(spec(limits={"memory_mb": 2048}), CAPPED, 3600).limits.memory_mb == 2048


def test_a_default_over_the_maximum_gives_the_maximum() -> None:
    odd = TenantRecord("odd", T0, max_limits={"pids": 64}, default_limits={"pids": 128})
    assert tenant_spec(spec(), odd, 3600).limits.pids == 64


def test_a_tenant_without_limits_leaves_the_spec_alone() -> None:
    given = spec(limits={"memory_mb": 100_000})
    assert tenant_spec(given, TenantRecord("default", T0), 3600) is given


@pytest.mark.parametrize(
    ("runtime", "maxima", "defaults", "field"),
    [
        (0, {}, {}, "max_runtime_s"),
        (None, {"open_files": 10}, {}, "max_limits.open_files"),
        (None, {"memory_mb": 1}, {}, "max_limits.memory_mb"),  # under what Limits takes
        (None, {}, {"pids": 2}, "default_limits.pids"),
    ],
)
def test_tenant_limits_no_run_could_meet_are_refused(
    runtime: int | None, maxima: dict[str, int], defaults: dict[str, int], field: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_tenant_limits(runtime, maxima, defaults)
    assert caught.value.details["field"] == field


def test_sane_tenant_limits_pass() -> None:
    check_tenant_limits(3600, {"memory_mb": 2048}, {"memory_mb": 512, "cpu_s": 10})
    check_tenant_limits(None, {"pids": 64}, {"pids": 128})  # the maximum wins at submit
