"""Task definitions through the App on a real store with real runs: versions, pinning, rerun,
parameters as data, the duration estimate, tenant scoping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcpexec.errors import InvalidRequest, TaskArchived, TaskNotFound
from mcpexec.models import RunFilter, RunRequest, Stream
from mcpexec.schedule_ops import ScheduleRequest
from mcpexec.views import run_view

from .task_app import ADMIN, ALICE, real_app, task, until

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

V1 = """
description: the daily report
shell: echo "v1 $MCPEXEC_PARAM_DAY"
params:
  type: object
  properties: {day: {type: string, format: date}}
  required: [day]
"""
V2 = V1.replace('"v1 ', '"v2 ')


async def test_define_is_idempotent_versions_immutable_and_runs_pin_a_version(
    tmp_path: Path,
) -> None:
    async with real_app(tmp_path) as app:
        v1, created = await app.tasks.define(task(V1), ADMIN)
        assert (v1.version, created) == (1, True)
        again, created = await app.tasks.define(task(V1 + "\nnetwork: false\n"), ADMIN)
        assert (again.version, created) == (1, False)
        v2, created = await app.tasks.define(task(V2), ADMIN)
        assert (v2.version, created) == (2, True)
        first = await app.tasks.get("report@1", ADMIN)
        assert first.definition.shell == 'echo "v1 $MCPEXEC_PARAM_DAY"'  # unchanged by v2
        diff = await app.tasks.diff("report", 1, 2, ADMIN)
        assert '-shell: echo "v1 $MCPEXEC_PARAM_DAY"' in diff
        assert '+shell: echo "v2 $MCPEXEC_PARAM_DAY"' in diff
        assert await app.tasks.diff("report", 2, 2, ADMIN) == []

        run, _ = await app.submit(RunRequest(task="report", params={"day": "2026-12-01"}), ADMIN)
        assert (run.task, run.task_version, run.params) == ("report", 2, {"day": "2026-12-01"})
        assert "estimated_duration_ms" not in run_view(run)  # no history yet
        done = await until(app, run.id, "completed")
        out, _, _ = await app.read_logs(run.id, ADMIN, Stream.STDOUT, 0, 1000)
        assert out == b"v2 2026-12-01\n"

        pinned, _ = await app.submit(
            RunRequest(task="report@1", params={"day": "2026-12-02"}), ADMIN
        )
        assert pinned.task_version == 1
        await until(app, pinned.id, "completed")
        out, _, _ = await app.read_logs(pinned.id, ADMIN, Stream.STDOUT, 0, 1000)
        assert out == b"v1 2026-12-02\n"

        # A third version does not change what a rerun runs: the same version and params.
        await app.tasks.define(task(V1.replace('"v1 ', '"v3 ')), ADMIN)
        again_run = await app.rerun(pinned.id, ADMIN)
        assert (again_run.task_version, again_run.params) == (1, {"day": "2026-12-02"})
        assert again_run.rerun_of == pinned.id
        await until(app, again_run.id, "completed")
        out, _, _ = await app.read_logs(again_run.id, ADMIN, Stream.STDOUT, 0, 1000)
        assert out == b"v1 2026-12-02\n"

        # History gives an estimate: the median of the successful runs' durations.
        estimated, _ = await app.submit(
            RunRequest(task="report", params={"day": "2026-12-03"}), ADMIN
        )
        assert estimated.estimated_duration_ms is not None
        assert estimated.estimated_duration_ms >= 0
        assert run_view(estimated)["estimated_duration_ms"] == estimated.estimated_duration_ms
        assert done.finished_at is not None

        page = await app.list_runs(ADMIN, RunFilter(task="report"), 50)
        assert {r.id for r in page.runs} == {run.id, pinned.id, again_run.id, estimated.id}
        assert [v.version for v in await app.tasks.versions("report", ADMIN)] == [1, 2, 3]


async def test_params_are_validated_naming_the_param(tmp_path: Path) -> None:
    async with real_app(tmp_path) as app:
        await app.tasks.define(task(V1), ADMIN)
        with pytest.raises(InvalidRequest) as bad:
            await app.submit(RunRequest(task="report", params={"day": "yesterday"}), ADMIN)
        assert bad.value.details["param"] == "day"
        with pytest.raises(InvalidRequest) as missing:
            await app.submit(RunRequest(task="report", params={}), ADMIN)
        assert missing.value.details["param"] == "day"
        with pytest.raises(InvalidRequest) as unknown:
            await app.submit(RunRequest(task="report", params={"day": "2026-01-01", "x": 1}), ADMIN)
        assert unknown.value.details["param"] == "x"
        with pytest.raises(InvalidRequest, match="run spec comes from its definition"):
            await app.submit(
                RunRequest(task="report", params={"day": "2026-01-01"}, env={"A": "b"}), ADMIN
            )
        with pytest.raises(TaskNotFound):
            await app.submit(RunRequest(task="report@7", params={}), ADMIN)


async def test_a_hostile_parameter_arrives_verbatim_and_runs_nothing(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    canary.write_text("still here")
    hostile = f"'; rm -rf / # \"; rm -f {canary} #` rm -f {canary} `$(rm -f {canary})"
    text = """
shell: printf '%s' "$MCPEXEC_PARAM_TEXT"; echo; cat params.json
params:
  type: object
  properties: {text: {type: string}}
"""
    async with real_app(tmp_path) as app:
        await app.tasks.define(task(text, name="echo-param"), ADMIN)
        run, _ = await app.submit(RunRequest(task="echo-param", params={"text": hostile}), ADMIN)
        await until(app, run.id, "completed")
        out, _, _ = await app.read_logs(run.id, ADMIN, Stream.STDOUT, 0, 10_000)
        first, _, rest = out.decode().partition("\n")
        assert first == hostile
        assert json.loads(rest) == {"text": hostile}
        assert canary.read_text() == "still here"


async def test_tasks_are_scoped_by_tenant_and_archive_keeps_history(tmp_path: Path) -> None:
    async with real_app(tmp_path) as app:
        await app.tasks.define(task("shell: echo acme"), ALICE)
        await app.tasks.define(task("shell: echo default"), ADMIN)
        mine = await app.tasks.get("report", ALICE)
        assert (mine.tenant, mine.owner) == ("acme", ALICE.token_id)
        assert [(r.tenant, r.name) for r in await app.tasks.list_tasks(ALICE)] == [
            ("acme", "report")
        ]
        assert len(await app.tasks.list_tasks(ADMIN)) == 2  # admins see every tenant
        run, _ = await app.submit(RunRequest(task="report"), ALICE)
        assert run.tenant == "acme"
        await until(app, run.id, "completed")
        archived = await app.tasks.archive("report", ALICE)
        assert archived.archived
        assert await app.tasks.list_tasks(ALICE) == []
        with pytest.raises(TaskArchived):
            await app.submit(RunRequest(task="report"), ALICE)
        with pytest.raises(TaskArchived):
            await app.schedules.create(ScheduleRequest(task="report", every="1m"), ALICE)
        assert (await app.get(run.id, ALICE)).task == "report"  # history stays readable
        assert (await app.tasks.get("report@1", ALICE)).archived


async def test_a_tasks_worker_labels_route_its_runs_with_the_requests_own(
    tmp_path: Path,
) -> None:
    async with real_app(tmp_path, worker_labels=["cuda", "gpu", "big"]) as app:
        await app.tasks.define(task("shell: echo on-gpu\nworker_labels: [gpu]\n", "train"), ADMIN)
        run, _ = await app.submit(RunRequest(task="train", worker_labels=["cuda"]), ADMIN)
        assert run.worker_labels == ["cuda", "gpu"]  # the task's and the request's
        await until(app, run.id, "completed")  # this app's workers have both
        again, _ = await app.submit(RunRequest(task="train"), ADMIN)
        assert again.worker_labels == ["gpu"]
        await until(app, again.id, "completed")
    async with real_app(tmp_path) as app:  # unlabelled workers leave them alone
        waiting, _ = await app.submit(RunRequest(task="train"), ADMIN)
        plain, _ = await app.submit(RunRequest(shell="true"), ADMIN)
        await until(app, plain.id, "completed")
        assert (await app.get(waiting.id, ADMIN)).status == "pending"
