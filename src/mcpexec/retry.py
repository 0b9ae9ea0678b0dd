"""The retry policy as pure functions: whether a failed attempt is retried, and when."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from mcpexec.models import NEVER_RETRIED, Backoff, FailureKind, RetryPolicy


def should_retry(policy: RetryPolicy, kind: FailureKind, attempts_made: int) -> bool:
    """A failed attempt is retried when its kind is retryable under the policy and attempts
    remain. Cancellation, validation and quota failures never are."""
    if kind in NEVER_RETRIED or kind not in policy.retry_on:
        return False
    return attempts_made < policy.max_attempts


def backoff_delay(policy: RetryPolicy, attempts_made: int, rng: random.Random) -> float:
    """Seconds to wait before attempt ``attempts_made + 1``.

    Exponential doubles ``delay_s`` per attempt made so far; both kinds are capped by
    ``max_delay_s``. Jitter draws uniformly from [delay/2, delay] so that runs failing together
    do not retry in lockstep, while the wait never exceeds the configured delay.
    """
    if policy.backoff is Backoff.FIXED:
        delay = policy.delay_s
    else:
        exponent = max(attempts_made - 1, 0)
        delay = policy.delay_s * (2.0 ** min(exponent, 62))
    delay = min(delay, policy.max_delay_s)
    if policy.jitter and delay > 0:
        delay = rng.uniform(delay / 2, delay)
    return delay


def next_attempt_at(
    policy: RetryPolicy,
    kind: FailureKind,
    attempts_made: int,
    now: datetime,
    rng: random.Random,
) -> datetime | None:
    """When the next attempt may start, or ``None`` if the run has failed for good."""
    if not should_retry(policy, kind, attempts_made):
        return None
    return now + timedelta(seconds=backoff_delay(policy, attempts_made, rng))
