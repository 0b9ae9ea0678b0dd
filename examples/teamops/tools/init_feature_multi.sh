#!/bin/sh
# A stand-in for tmops_v6_portable/tmops_tools/init_feature_multi.sh: runs in the workflow run's
# workspace (its own directory or git worktree) and lays out the feature's files. The feature
# name arrives as "$1" (from "$MCPEXEC_PARAM_FEATURE"), already validated by the workflow's
# parameter schema; it is only ever used quoted, as data.
set -eu
feature="$1"
here="$(dirname "$0")/.."
mkdir -p .tmops/instructions checkpoints
chmod 700 checkpoints
for role in orchestrator tester implementer verifier; do
    cp "$here/instructions/$role.md" ".tmops/instructions/$role.md"
done
printf '# Task spec: %s\n\nWrite the feature %s test-first.\n' "$feature" "$feature" > TASK_SPEC.md
echo "initialized feature $feature in $PWD"
