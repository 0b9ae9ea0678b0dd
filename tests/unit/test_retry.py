from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from mcpexec.models import DEFAULT_RETRY, Backoff, FailureKind, RetryPolicy
from mcpexec.retry import backoff_delay, next_attempt_at, should_retry

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_default_policy_retries_only_lost_workers() -> None:
    assert should_retry(DEFAULT_RETRY, FailureKind.WORKER_LOST, 1)
    assert should_retry(DEFAULT_RETRY, FailureKind.STORE_ERROR, 1)  # a full disk, not the task
    assert not should_retry(DEFAULT_RETRY, FailureKind.EXIT_CODE, 1)
    assert not should_retry(DEFAULT_RETRY, FailureKind.WORKER_LOST, 3)


def test_user_policy_retries_failures_until_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert should_retry(policy, FailureKind.EXIT_CODE, 1)
    assert should_retry(policy, FailureKind.TIMEOUT, 2)
    assert not should_retry(policy, FailureKind.EXIT_CODE, 3)


@pytest.mark.parametrize("kind", [FailureKind.CANCELLED, FailureKind.VALIDATION, FailureKind.QUOTA])
def test_never_retried_kinds(kind: FailureKind) -> None:
    assert not should_retry(RetryPolicy(max_attempts=10), kind, 1)


def test_retry_on_cannot_name_unretryable_kinds() -> None:
    with pytest.raises(ValueError, match="can never be retried"):
        RetryPolicy(retry_on=frozenset({FailureKind.CANCELLED}))


def test_retry_on_narrows() -> None:
    policy = RetryPolicy(max_attempts=5, retry_on=frozenset({FailureKind.TIMEOUT}))
    assert should_retry(policy, FailureKind.TIMEOUT, 1)
    assert not should_retry(policy, FailureKind.EXIT_CODE, 1)


def test_exponential_backoff_doubles_and_caps() -> None:
    policy = RetryPolicy(delay_s=1, max_delay_s=5, jitter=False)
    rng = random.Random(0)
    assert [backoff_delay(policy, n, rng) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 5, 5]


def test_fixed_backoff() -> None:
    policy = RetryPolicy(backoff=Backoff.FIXED, delay_s=3, jitter=False)
    assert backoff_delay(policy, 7, random.Random(0)) == 3


def test_huge_attempt_counts_do_not_overflow() -> None:
    policy = RetryPolicy(max_attempts=100, delay_s=1, max_delay_s=60, jitter=False)
    assert backoff_delay(policy, 99, random.Random(0)) == 60


def test_jitter_stays_between_half_and_full_delay() -> None:
    policy = RetryPolicy(delay_s=8, max_delay_s=100, jitter=True)
    rng = random.Random(42)
    delays = [backoff_delay(policy, 1, rng) for _ in range(200)]
    assert all(4 <= d <= 8 for d in delays)
    assert len(set(delays)) > 100  # really random


def test_next_attempt_at() -> None:
    policy = RetryPolicy(max_attempts=2, delay_s=10, jitter=False)
    assert next_attempt_at(
        policy, FailureKind.EXIT_CODE, 1, NOW, random.Random()
    ) == NOW + timedelta(seconds=10)
    assert next_attempt_at(policy, FailureKind.EXIT_CODE, 2, NOW, random.Random()) is None
