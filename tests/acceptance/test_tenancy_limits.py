"""A tenant's runtime cap and resource limits against a real ``serve`` (issue 10): set by the
CLI (``tenants create … --max-runtime 2s --memory-mb 2048 --default-memory-mb 256``), shown by
``quota show``, applied to every submit (REST and the CLI here; the App's submit path is the one
rule of every surface) and visible on the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcpexec.client import ApiError, Client

from .conftest import make_server

pytestmark = pytest.mark.slow


def test_runtime_cap_and_resource_limits_of_a_tenant(tmp_path: Path) -> None:
    srv = make_server(tmp_path, workers=1, MCPEXEC_SANDBOX="none")
    srv.start()
    try:
        made = srv.cli(
            "tenants", "create", "capped", "--max-runtime", "2s", "--memory-mb", "2048",
            "--default-memory-mb", "256", "--pids", "512", "--json",
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        quota = json.loads(made.stdout)
        assert quota["limits"]["max_runtime_s"] == 2
        assert quota["max_limits"] == {"memory_mb": 2048, "pids": 512}
        assert quota["default_limits"] == {"memory_mb": 256}
        with srv.client() as admin:
            token = admin.create_token("bot", "submitter", "capped")["token"]
            listed = {t["tenant"]: t for t in admin.tenants()}
            assert listed["capped"]["limits"]["max_runtime_s"] == 2
            assert listed["default"]["max_limits"] == {}
        table = srv.cli("quota", "show", "capped")
        assert table.returncode == 0, table.stderr
        assert "memory_mb=256/2048" in table.stdout
        assert "pids=-/512" in table.stdout

        with Client(srv.url, token) as c:
            with pytest.raises(ApiError) as over:
                c.submit({"command": ["true"], "timeout_s": 10})
            assert (over.value.status, over.value.api_code) == (422, "invalid_request")
            assert over.value.details["field"] == "timeout_s"
            assert "at most 2 s" in str(over.value)
            with pytest.raises(ApiError) as big:
                c.submit({"command": ["true"], "limits": {"memory_mb": 4096}})
            assert big.value.status == 422
            assert big.value.details["field"] == "limits.memory_mb"
            assert "at most 2048" in str(big.value)

            run = c.submit({"command": ["true"]})
            assert run["spec"]["timeout_s"] == 2
            assert run["spec"]["limits"]["memory_mb"] == 256  # the tenant's default
            assert run["spec"]["limits"]["pids"] == 512  # no default: the maximum
            done = c.wait(run["id"], 60)
            assert done["status"] == "completed", done
            assert c.get(run["id"])["spec"]["limits"]["memory_mb"] == 256

        cli = srv.cli("submit", "--timeout", "30", "--", "true", env={"MCPEXEC_TOKEN": token})
        assert cli.returncode != 0
        assert "timeout_s" in cli.stderr + cli.stdout

        changed = srv.cli("tenants", "set", "capped", "--max-runtime", "1m", "--json")
        assert changed.returncode == 0, changed.stderr
        assert json.loads(changed.stdout)["limits"]["max_runtime_s"] == 60
        assert json.loads(changed.stdout)["max_limits"] == {}  # set replaces every quota
        with Client(srv.url, token) as c:
            assert c.submit({"command": ["true"], "timeout_s": 30})["spec"]["timeout_s"] == 30
    finally:
        srv.stop()
