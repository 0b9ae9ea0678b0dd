"""The workflow engine on a real App (SQLite, real processes, the fake agent CLI)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mcpexec.errors import CheckpointInvalid, InvalidRequest, WorkflowStateConflict
from mcpexec.models import RunFilter, Stream
from mcpexec.workflows import engine as engine_module
from workflow_helpers import ADMIN, MALICIOUS, PIPELINE, pipeline, step_status, until, workflow_app


def agent_calls(workspace: Path) -> list[dict[str, Any]]:
    lines = (workspace / ".fake-agent/calls.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


pytestmark = pytest.mark.anyio


async def test_four_phase_pipeline_end_to_end(tmp_path: Path) -> None:
    telemetry = tmp_path / "events.jsonl"
    async with workflow_app(tmp_path, workflow_events_file=str(telemetry)) as app:
        record, created = await app.workflows.define(PIPELINE, ADMIN)
        assert (record.name, record.version, created) == ("pipeline", 1, True)
        rec = await app.workflows.start("pipeline", {"feature": "test-auth"}, ADMIN)
        done = await until(app, rec.id, "completed")
        steps = done.state["steps"]
        assert [steps[s]["status"] for s in steps] == ["completed"] * 5
        assert steps["verifier"]["checkpoint"]["status"] == "complete"
        workspace = Path(done.state["workspace"])
        calls = agent_calls(workspace)
        assert [c["step"] for c in calls] == ["orchestrator", "tester", "implementer", "verifier"]
        # one session: the first phase creates it, later phases --resume it
        assert "--resume" not in calls[0]["argv"]
        assert all(c["argv"][-2:] == ["--resume", calls[0]["session"]] for c in calls[1:])
        runs = await app.list_runs(ADMIN, RunFilter(labels={"workflow_run": rec.id}))
        assert {r.labels["step"] for r in runs.runs} == set(steps)
        kinds = [e.kind for e in await app.workflows.events(rec.id, ADMIN)]
        assert kinds[:2] == ["queued", "started"]
        assert kinds[-1] == "completed"
        assert kinds.count("checkpoint_detected") == 4
        assert (workspace / "checkpoints").stat().st_mode & 0o777 == 0o700
        assert (workspace / "checkpoints/tester.json").stat().st_mode & 0o777 == 0o600
        lines = [json.loads(line) for line in telemetry.read_text().splitlines()]
        assert [line["event"] for line in lines] == kinds  # every event, as JSON lines
        labels = {"tenant": "default", "workflow": "pipeline", "status": "completed"}
        steps_done = app.metrics.registry.get_sample_value("mcpexec_workflow_steps_total", labels)
        assert steps_done == 5  # /metrics counts the steps finished
        assert {line["workflow_run"] for line in lines} == {rec.id}


def control(rec: Any, name: str, text: str = "") -> None:
    """Tell the fake agent of this workflow run what to do (``.fake-agent/NAME``)."""
    folder = Path(rec.state["workspace"]) / ".fake-agent"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text)


def events_of(kinds: list[Any]) -> list[str]:
    return [e.kind for e in kinds]


async def test_two_runs_concurrently_without_interference(tmp_path: Path) -> None:
    async with workflow_app(tmp_path) as app:
        await app.workflows.define(PIPELINE, ADMIN)
        one = await app.workflows.start("pipeline", {"feature": "feature-one"}, ADMIN)
        two = await app.workflows.start("pipeline", {"feature": "feature-two"}, ADMIN)
        a = await until(app, one.id, "completed")
        b = await until(app, two.id, "completed")
        ws_a, ws_b = Path(a.state["workspace"]), Path(b.state["workspace"])
        assert ws_a != ws_b
        assert (ws_a / "TASK_SPEC.md").read_text() == "feature feature-one\n"
        assert (ws_b / "TASK_SPEC.md").read_text() == "feature feature-two\n"
        assert a.state["sessions"]["main"] != b.state["sessions"]["main"]
        for workspace in (ws_a, ws_b):
            assert len(agent_calls(workspace)) == 4  # each agent wrote only its own workspace
            assert workspace.stat().st_mode & 0o777 == 0o700


async def test_more_runs_than_the_concurrency_wait_queued(tmp_path: Path) -> None:
    async with workflow_app(tmp_path) as app:
        await app.workflows.define(pipeline(modes={"orchestrator": "slow"}), ADMIN)
        runs = [
            await app.workflows.start("pipeline", {"feature": f"feat-{i}"}, ADMIN) for i in range(3)
        ]

        def orchestrating(rec: Any) -> bool:
            return step_status(rec, "orchestrator") == "running"

        first = [await until(app, r.id, orchestrating) for r in runs[:2]]
        third = await app.workflows.get_run(runs[2].id, ADMIN)
        assert third.status == "queued"  # concurrency: 2
        for rec in first:
            control(rec, "orchestrator.go")
        for rec in first:
            await until(app, rec.id, "completed")
        started = await until(app, runs[2].id, orchestrating)
        control(started, "orchestrator.go")
        await until(app, runs[2].id, "completed")


async def test_agent_killed_mid_phase_fails_the_step_then_manual_fallback(tmp_path: Path) -> None:
    async with workflow_app(tmp_path) as app:
        await app.workflows.define(pipeline(modes={"tester": "crash"}), ADMIN)
        rec = await app.workflows.start("pipeline", {"feature": "crashy"}, ADMIN)
        failed = await until(app, rec.id, "failed")
        assert step_status(failed, "tester") == "failed"
        assert "exit" in failed.state["steps"]["tester"]["error"]
        assert step_status(failed, "implementer") == "pending"
        # mark-done without the checkpoint is refused: the engine validates it
        with pytest.raises(CheckpointInvalid):
            await app.workflows.act(rec.id, "mark-done", ADMIN, "tester")
        workspace = Path(failed.state["workspace"])
        (workspace / "checkpoints/tester.json").write_text('{"status": "done by hand"}')
        moved = await app.workflows.act(rec.id, "mark-done", ADMIN, "tester")
        assert moved.status == "running"
        done = await until(app, rec.id, "completed")
        assert done.state["steps"]["tester"]["manual"] is True
        assert done.state["steps"]["tester"]["checkpoint"] == {"status": "done by hand"}


async def test_a_crashing_agent_follows_its_retry_policy(tmp_path: Path) -> None:
    retry = {"max_attempts": 2, "delay_s": 0, "jitter": False, "retry_on": ["exit_code"]}
    text = pipeline(
        modes={"implementer": "crash-once"}, steps_extra={"implementer": {"retry": retry}}
    )
    async with workflow_app(tmp_path) as app:
        await app.workflows.define(text, ADMIN)
        rec = await app.workflows.start("pipeline", {"feature": "retry-me"}, ADMIN)
        done = await until(app, rec.id, "completed")
        run = await app.get(done.state["steps"]["implementer"]["run_id"], ADMIN)
        assert run.attempts == 2


@pytest.mark.parametrize(
    ("mode", "why"),
    [("corrupt", "not valid"), ("badschema", "'status' is a required"), ("symlink", "symlink")],
)
async def test_a_bad_checkpoint_refuses_the_transition_with_an_alert(
    tmp_path: Path, mode: str, why: str
) -> None:
    async with workflow_app(tmp_path) as app:
        await app.workflows.define(pipeline(modes={"tester": mode}), ADMIN)
        rec = await app.workflows.start("pipeline", {"feature": "corrupt"}, ADMIN)
        failed = await until(app, rec.id, "failed")
        steps = failed.state["steps"]
        assert steps["tester"]["status"] == "failed"
        assert steps["tester"]["checkpoint"] is None
        assert steps["orchestrator"]["checkpoint"]["status"] == "complete"  # kept
        assert steps["implementer"]["status"] == "pending"
        alerts = [
            e for e in await app.workflows.events(rec.id, ADMIN) if e.kind == "checkpoint_invalid"
        ]
        assert len(alerts) == 1
        assert alerts[0].detail["alert"] is True
        assert why in alerts[0].detail["message"]


async def test_an_agent_that_lingers_after_its_checkpoint_is_moved_on_and_stopped(
    tmp_path: Path,
) -> None:
    async with workflow_app(tmp_path) as app:
        await app.workflows.define(pipeline(modes={"orchestrator": "linger"}), ADMIN)
        rec = await app.workflows.start("pipeline", {"feature": "linger"}, ADMIN)
        done = await until(app, rec.id, "completed")
        lingering = await app.get(done.state["steps"]["orchestrator"]["run_id"], ADMIN)
        assert lingering.status == "cancelled"
        kinds = events_of(await app.workflows.events(rec.id, ADMIN))
        assert "step_stopped" in kinds


async def test_a_checkpoint_written_wakes_the_engine_without_a_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With the engine's own ticks an hour apart, only the checkpoint watch (inotify) can see
    # the lingering agent's checkpoint: it prints nothing, so no run change wakes the engine.
    monkeypatch.setattr(engine_module, "WATCHED_S", 3600.0)
    monkeypatch.setattr(engine_module, "CHECK_S", 3600.0)
    async with workflow_app(tmp_path) as app:
        await app.workflows.define(pipeline(modes={"orchestrator": "linger"}), ADMIN)
        rec = await app.workflows.start("pipeline", {"feature": "watched"}, ADMIN)

        def detected(r: Any) -> bool:
            return r.state["steps"]["orchestrator"].get("detected_at") is not None

        seen = await until(app, rec.id, detected, timeout_s=30)
        assert step_status(seen, "orchestrator") == "running"  # lingering: stopped after 2 s
        kinds = events_of(await app.workflows.events(rec.id, ADMIN))
        assert "checkpoint_detected" in kinds


@pytest.mark.parametrize(
    "feature",
    MALICIOUS,
)
async def test_malicious_feature_names_are_refused_and_nothing_runs(
    tmp_path: Path, feature: str
) -> None:
    async with workflow_app(tmp_path, workers=1) as app:
        await app.workflows.define(PIPELINE, ADMIN)
        with pytest.raises(InvalidRequest) as caught:
            await app.workflows.start("pipeline", {"feature": feature}, ADMIN)
        assert caught.value.details["param"] == "feature"
        assert await app.workflows.list_runs(ADMIN) == []
        assert (await app.list_runs(ADMIN, RunFilter())).runs == []


GATED = """
name: gated
steps:
  build: {shell: 'echo built > out.txt'}
  review: {needs: [build], gate: manual}
  ship: {needs: [review], command: [cat, out.txt]}
  lint: {needs: [build], shell: 'true'}
"""


async def test_a_manual_gate_waits_for_approve(tmp_path: Path) -> None:
    async with workflow_app(tmp_path) as app:
        await app.workflows.define(GATED, ADMIN)
        rec = await app.workflows.start("gated", {}, ADMIN)
        waiting = await until(app, rec.id, "waiting")
        assert step_status(waiting, "review") == "waiting"
        assert step_status(waiting, "ship") == "pending"
        await until(app, rec.id, lambda r: step_status(r, "lint") == "completed")
        with pytest.raises(WorkflowStateConflict):
            await app.workflows.act(rec.id, "approve", ADMIN, "ship")
        await app.workflows.act(rec.id, "approve", ADMIN)
        done = await until(app, rec.id, "completed")
        ship = await app.get(done.state["steps"]["ship"]["run_id"], ADMIN)
        data, _, _ = await app.read_logs(ship.id, ADMIN, Stream.STDOUT, 0, 100)
        assert data == b"built\n"  # the step ran in the workspace
        kinds = events_of(await app.workflows.events(rec.id, ADMIN))
        assert "gate_waiting" in kinds
        assert "gate_approved" in kinds


async def test_pause_resume_skip_and_cancel(tmp_path: Path) -> None:
    async with workflow_app(tmp_path) as app:
        await app.workflows.define(pipeline(modes={"orchestrator": "slow"}), ADMIN)
        rec = await app.workflows.start("pipeline", {"feature": "pausing"}, ADMIN)
        running = await until(app, rec.id, lambda r: step_status(r, "orchestrator") == "running")
        paused = await app.workflows.act(rec.id, "pause", ADMIN)
        assert paused.status == "waiting"
        control(running, "orchestrator.go")
        # automation paused: the checkpoint is still tracked, the next phase does not start
        tracked = await until(app, rec.id, lambda r: step_status(r, "orchestrator") == "completed")
        assert step_status(tracked, "tester") == "pending"
        assert tracked.status == "waiting"
        await app.workflows.act(rec.id, "skip", ADMIN, "tester")
        control(running, "implementer", "hang")
        await app.workflows.act(rec.id, "resume", ADMIN)
        hanging = await until(app, rec.id, lambda r: step_status(r, "implementer") == "running")
        cancelled = await app.workflows.act(rec.id, "cancel", ADMIN)
        assert cancelled.status == "cancelled"
        assert step_status(cancelled, "implementer") == "cancelled"
        run_id = hanging.state["steps"]["implementer"]["run_id"]
        loop_run = await app.wait(run_id, ADMIN, 15)
        assert loop_run.status == "cancelled"
        with pytest.raises(WorkflowStateConflict):
            await app.workflows.act(rec.id, "resume", ADMIN)


def git_repo(path: Path) -> Path:
    import subprocess

    path.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(path)}
    for args in (
        ["init", "-q", "-b", "main"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "0"],
    ):
        subprocess.run(["git", *args], cwd=path, env=env, check=True)
    return path


COMMIT = "git -c user.name=a -c user.email=a@a commit -q --allow-empty -am"


def git_flow(repo: Path) -> str:
    preserve = {"git": "reset", "preserve": ["tests/**"]}
    return json.dumps(
        {
            "name": "gitflow",
            "workspace": {"git": True, "repo": str(repo)},
            "on_failure": "rollback",
            "steps": {
                "tester": {
                    "shell": "mkdir -p tests && echo a > tests/test_a.py && git add -A && "
                    f"{COMMIT} t",
                    "rollback": preserve,
                },
                "implementer": {
                    "needs": ["tester"],
                    "shell": "echo impl > impl.py && echo b > tests/test_b.py && "
                    'test -z "$MCPEXEC_PARAM_FAIL"',
                    "rollback": preserve,
                },
            },
            "params": {"type": "object", "properties": {"fail": {"type": "string"}}},
        }
    )


async def test_git_workspace_failure_rolls_back_keeping_the_tests(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo")
    async with workflow_app(tmp_path) as app:
        await app.workflows.define(git_flow(repo), ADMIN)
        rec = await app.workflows.start("gitflow", {"fail": "yes"}, ADMIN)
        done = await until(app, rec.id, "rolled_back")
        workspace = Path(done.state["workspace"])
        assert done.state["branch"] == f"workflow/{rec.id}"
        assert step_status(done, "implementer") == "rolled_back"
        assert not (workspace / "impl.py").exists()  # the failed step's work is gone
        assert (workspace / "tests/test_a.py").read_text() == "a\n"  # committed by tester
        assert (workspace / "tests/test_b.py").read_text() == "b\n"  # preserved
        kinds = events_of(await app.workflows.events(rec.id, ADMIN))
        assert "rollback" in kinds
        assert kinds[-1] == "rolled_back"
        # the workspace is a clone; its branch is published into the repository
        assert (workspace / ".git").is_dir()
        published = git_out(repo, "rev-parse", f"refs/heads/workflow/{rec.id}")
        assert published == git_out(workspace, "rev-parse", "HEAD")


def git_out(cwd: Path, *args: str) -> str:
    import subprocess

    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)
    return done.stdout.decode().strip()


async def test_a_commit_on_the_branch_in_the_repository_during_a_step_pauses_the_run(
    tmp_path: Path,
) -> None:
    repo = git_repo(tmp_path / "repo")
    flow = {
        "name": "waits",
        "workspace": {"git": True, "repo": str(repo)},
        "steps": {
            # the step goes on until the test lets it finish (a file in its workspace)
            "work": {"shell": f"while [ ! -f go ]; do sleep 0.05; done; {COMMIT} work"},
            "after": {"needs": ["work"], "shell": "true"},
        },
    }
    async with workflow_app(tmp_path) as app:
        await app.workflows.define(json.dumps(flow), ADMIN)
        rec = await app.workflows.start("waits", {}, ADMIN)
        running = await until(app, rec.id, lambda r: step_status(r, "work") == "running")
        branch = f"refs/heads/workflow/{rec.id}"
        # someone commits on the run's branch in the repository meanwhile
        tree = git_out(repo, "rev-parse", f"{branch}^{{tree}}")
        theirs = git_out(
            repo, "-c", "user.name=o", "-c", "user.email=o@o", "commit-tree", tree,
            "-p", branch, "-m", "outside",
        )  # fmt: skip
        git_out(repo, "update-ref", branch, theirs)
        (Path(running.state["workspace"]) / "go").write_text("")
        paused = await until(app, rec.id, lambda r: r.state["paused"])
        assert step_status(paused, "work") == "completed"
        assert step_status(paused, "after") == "pending"  # nothing started on top of it
        changed = [
            e for e in await app.workflows.events(rec.id, ADMIN) if e.kind == "branch_changed"
        ]
        assert changed[0].detail["where"] == "the repository"
        assert changed[0].detail["found"] == theirs
        assert git_out(repo, "rev-parse", branch) == theirs  # theirs is not overwritten
        # a person resolves it (here: keeps the workflow's work) and resumes
        await app.workflows.act(rec.id, "resume", ADMIN)
        done = await until(app, rec.id, "completed")
        assert git_out(repo, "rev-parse", branch) == git_out(
            Path(done.state["workspace"]), "rev-parse", "HEAD"
        )


async def test_manual_rollback_to_a_step_resets_it_and_what_follows(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo")
    async with workflow_app(tmp_path) as app:
        await app.workflows.define(git_flow(repo), ADMIN)
        rec = await app.workflows.start("gitflow", {}, ADMIN)
        done = await until(app, rec.id, "completed")
        workspace = Path(done.state["workspace"])
        assert (workspace / "impl.py").exists()
        back = await app.workflows.act(rec.id, "rollback", ADMIN, "tester")
        assert back.status == "waiting"
        assert back.state["paused"] is True
        assert [step_status(back, s) for s in ("tester", "implementer")] == ["pending"] * 2
        assert not (workspace / "impl.py").exists()
        assert (workspace / "tests/test_a.py").exists()  # preserve keeps the tests
        with pytest.raises(WorkflowStateConflict, match="nothing to roll back"):
            await app.workflows.act(rec.id, "rollback", ADMIN, "implementer")  # pending now
        # resuming runs them again
        await app.workflows.act(rec.id, "resume", ADMIN)
        rerun = await until(app, rec.id, "completed")
        assert len(rerun.state["steps"]["tester"]["runs"]) == 2
        assert (workspace / "impl.py").exists()


def outside_commit(workspace: str) -> None:
    """Someone commits on the workflow's branch from outside."""
    import subprocess

    subprocess.run(
        ["sh", "-c", f"echo x > outside.txt && git add -A && {COMMIT} outside"],
        cwd=workspace,
        check=True,
        env={"PATH": "/usr/bin:/bin", "HOME": workspace},
    )


async def test_an_outside_commit_on_the_branch_pauses_the_run(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo")
    flow = json.loads(git_flow(repo))
    flow["steps"]["review"] = {"needs": ["tester"], "gate": "manual"}
    flow["steps"]["implementer"]["needs"] = ["review"]
    async with workflow_app(tmp_path) as app:
        await app.workflows.define(json.dumps(flow), ADMIN)
        rec = await app.workflows.start("gitflow", {}, ADMIN)
        waiting = await until(app, rec.id, lambda r: step_status(r, "review") == "waiting")
        outside_commit(waiting.state["workspace"])
        await app.workflows.act(rec.id, "approve", ADMIN, "review")
        paused = await until(app, rec.id, lambda r: r.state["paused"])
        assert step_status(paused, "implementer") == "pending"  # it did not start
        alerts = [
            e for e in await app.workflows.events(rec.id, ADMIN) if e.kind == "branch_changed"
        ]
        assert len(alerts) == 1
        assert alerts[0].detail["alert"] is True
        await app.workflows.act(rec.id, "resume", ADMIN)  # a person looked: go on
        await until(app, rec.id, "completed")
