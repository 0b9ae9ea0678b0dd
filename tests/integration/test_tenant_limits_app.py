"""A tenant's runtime cap and resource limits on the runs of defined tasks and on a schedule's
fire (``TaskOps.new_run``, the scheduler's path): the same rule as a plain submit."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcpexec.errors import InvalidRequest
from mcpexec.models import RunRequest

from .task_app import ADMIN, real_app, task

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


async def test_task_runs_and_fires_get_the_tenant_limits(tmp_path: Path) -> None:
    async with real_app(tmp_path, workers=0) as app:
        await app.tenancy.update_tenant(
            ADMIN,
            "default",
            None,
            None,
            max_runtime_s=5,
            max_limits={"memory_mb": 1024},
            default_limits={"memory_mb": 256},
        )
        plain, _ = await app.tasks.define(task("shell: 'true'\n", name="plain"), ADMIN)
        run, _ = await app.submit(RunRequest(task="plain"), ADMIN)
        assert (run.spec.timeout_s, run.spec.limits.memory_mb) == (5, 256)
        fire = await app.tasks.new_run("default", plain, {}, labels={"schedule": "s1"})
        assert (fire.spec.timeout_s, fire.spec.limits.memory_mb) == (5, 256)

        await app.tasks.define(task("shell: 'true'\ntimeout_s: 600\n", name="long"), ADMIN)
        with pytest.raises(InvalidRequest) as long:
            await app.submit(RunRequest(task="long"), ADMIN)
        assert long.value.details["field"] == "timeout_s"
        big = "shell: 'true'\nlimits: {memory_mb: 2048}\n"
        await app.tasks.define(task(big, name="big"), ADMIN)
        with pytest.raises(InvalidRequest) as over:
            await app.submit(RunRequest(task="big"), ADMIN)
        assert over.value.details["field"] == "limits.memory_mb"
