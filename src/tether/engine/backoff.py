"""Retry delays: a pure function of the policy and the attempt number."""

from __future__ import annotations

import random
from collections.abc import Callable

from tether.options import Retry


def retry_delay(policy: Retry, attempt: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait after failed attempt `attempt` (1-based) before the next one.

    `min(max_delay, min_delay * factor**(attempt-1))`; with jitter, a uniform draw from the upper
    half of that, so that retries of many runs spread out but never exceed `max_delay`.
    """
    base = min(policy.max_delay, policy.min_delay * policy.factor ** (attempt - 1))
    if policy.jitter:
        return base * (0.5 + 0.5 * rand())
    return base
