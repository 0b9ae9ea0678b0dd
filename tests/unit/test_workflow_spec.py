"""Workflow definitions: parsing, errors naming source, line and field, the DAG check, hashes."""

from __future__ import annotations

import pytest

from mcpexec.errors import InvalidRequest
from mcpexec.workflows.spec import content_hash, parse_workflow

GOOD = """\
name: teamops
params:
  type: object
  properties: {feature: {type: string, pattern: "^[a-z0-9-]{3,20}$"}}
  required: [feature]
workspace: {git: true, repo: /srv/repo}
concurrency: 2
steps:
  init: {shell: './init.sh "$MCPEXEC_PARAM_FEATURE"'}
  orchestrator:
    needs: [init]
    agent: {provider: claude_code, instructions: instructions/orchestrator.md}
    checkpoint: {file: checkpoints/orchestrator.json, schema: {type: object}, timeout_s: 1800}
    rollback: {git: reset, preserve: [TASK_SPEC.md]}
  review: {needs: [orchestrator], gate: manual}
  lint: {needs: [init], command: [ruff, check]}
  undo: {needs: [review], shell: 'true', rollback: {shell: 'git stash'}}
"""


def error(text: str) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        parse_workflow(text, source="wf.yaml")
    return caught.value


def test_a_good_definition_parses_in_dag_order() -> None:
    definition = parse_workflow(GOOD, source="wf.yaml")
    assert definition.order() == ["init", "orchestrator", "lint", "review", "undo"]
    assert definition.steps["orchestrator"].kind == "agent"
    assert definition.steps["review"].kind == "gate"
    assert definition.steps["orchestrator"].checkpoint is not None
    # the same content spelled differently is the same version
    assert content_hash(definition) == content_hash(
        parse_workflow(GOOD.replace("concurrency: 2", "concurrency: 2\non_failure: fail"))
    )
    assert content_hash(definition) != content_hash(parse_workflow(GOOD.replace("2", "3", 1)))


@pytest.mark.parametrize(
    ("change", "field", "line", "words"),
    [
        (("needs: [orchestrator]", "needs: [nope]"), "steps.review.needs", 15, "unknown step"),
        (
            ("needs: [init]\n    agent", "needs: [review]\n    agent"),
            "steps.orchestrator.needs",
            11,
            "cycle",
        ),
        (("gate: manual", "gate: manual, shell: x"), "steps.review", 15, "exactly one"),
        (
            ("checkpoints/orchestrator.json", "../../etc/passwd"),
            "steps.orchestrator.checkpoint.file",
            13,
            "relative path",
        ),
        (
            ("checkpoints/orchestrator.json", "/etc/passwd"),
            "steps.orchestrator.checkpoint.file",
            13,
            "relative path",
        ),
        (
            ("instructions/orchestrator.md", "../x.md"),
            "steps.orchestrator.agent.instructions",
            12,
            "relative path",
        ),
        (("concurrency: 2", "concurrency: 0"), "concurrency", 7, "greater than"),
        (("  lint:", "  Lint:"), "steps", 8, "step name"),
        (("git: reset", "git: rebase"), "steps.orchestrator.rollback", 14, "reset"),
        (
            ("schema: {type: object}", "schema: {type: 12}"),
            "steps.orchestrator.checkpoint.schema",
            13,
            "JSON Schema",
        ),
        (("name: teamops", "name: Team Ops"), "name", 1, "name"),
        (
            ("timeout_s: 1800", "timeout_s: true"),
            "steps.orchestrator.checkpoint.timeout_s",
            13,
            "valid number",
        ),
    ],
)
def test_errors_name_the_file_line_and_field(
    change: tuple[str, str], field: str, line: int, words: str
) -> None:
    text = GOOD.replace(*change)
    assert text != GOOD
    found = error(text)
    assert found.details["field"] == field
    assert found.details["line"] == line
    assert found.message.startswith(f"wf.yaml:{line}:")
    assert words in found.message


def test_unsafe_yaml_is_refused() -> None:
    assert "twice" in error(GOOD + "name: again\n").message
    assert "aliases" in error(GOOD + "x: &a [1]\ny: *a\n").message
    assert "unknown" not in error("name: x\nsteps: {}\n").message
    assert error("just text").message.startswith("wf.yaml")


def test_a_parameter_schema_is_checked_like_a_tasks() -> None:
    found = error(GOOD.replace("type: object\n  properties", "type: object\n  patternProperties"))
    assert found.details["field"] == "params"
