"""Frozen option objects written next to a task or a trigger: retry policy, queue (with its rate
limit), debounce."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from tether.errors import ConfigurationError


@dataclass(frozen=True)
class Retry:
    """Exponential backoff: the delay before attempt n+1 is min(max_delay, min_delay * factor**(n-1))
    seconds; with `jitter`, a uniform draw from the upper half of that. `max_attempts` counts the
    first attempt."""

    max_attempts: int = 3
    factor: float = 2.0
    min_delay: float = 1.0
    max_delay: float = 60.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError(f"Retry.max_attempts must be >= 1, got {self.max_attempts}")
        if self.factor < 1:
            raise ConfigurationError(f"Retry.factor must be >= 1, got {self.factor}")
        if self.min_delay < 0 or self.max_delay < self.min_delay:
            raise ConfigurationError(
                f"Retry delays need 0 <= min_delay <= max_delay, got {self.min_delay}, {self.max_delay}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Retry:
        return cls(**{k: data[k] for k in ("max_attempts", "factor", "min_delay", "max_delay", "jitter")
                      if k in data})


ON_KEY_LIMIT = ("queue", "cancel_in_progress", "cancel_newest")
RATE_SCOPES = ("queue", "concurrency_key", "payload")  # how a stored limit is keyed
TOTAL_KEY = "\x1e"  # the concurrency key of a queue's total_concurrency places (queue_slots)


def stored_key(payload: Any) -> str:
    """The key function of a limit read from the task registry, without the task's code (a
    process that triggers a task by id): it has none, so the run's rate key is left unset and
    its concurrency key stands in for it."""
    raise ConfigurationError("the rate limit key function is not known without the task's code")


@dataclass(frozen=True)
class RateLimit:
    """At most `limit` runs of a queue start per `period` (seconds, "1s", "1m", a timedelta),
    spread out evenly: one every period / limit, and after a quiet spell up to `burst` at once.
    In any window of `period`, at most limit + burst runs start.

    `key`: None, one limit for the whole queue; "concurrency_key", one per concurrency key; a
    function of the payload returning a string, one per value it returns (computed when the run
    is triggered)."""

    limit: float
    period: float | str | Any  # seconds, "1s"/"1m", or a timedelta
    burst: int = 1
    key: str | Callable[[Any], str] | None = None

    def __post_init__(self) -> None:
        from tether.durations import seconds

        if isinstance(self.limit, bool) or not isinstance(self.limit, int | float) \
                or not math.isfinite(self.limit) or self.limit <= 0:
            raise ConfigurationError(f"RateLimit limit must be a positive number, got {self.limit!r}")
        period = seconds(self.period, "RateLimit period")
        if not math.isfinite(period) or period <= 0:
            raise ConfigurationError(f"RateLimit period must be positive, got {self.period!r}")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise ConfigurationError(
                f"RateLimit burst (how many runs may start at once) must be an integer >= 1, "
                f"got {self.burst!r}")
        if self.key is not None and self.key != "concurrency_key" and not callable(self.key):
            raise ConfigurationError(
                f"RateLimit key must be None, \"concurrency_key\" or a function of the payload "
                f"returning a string, got {self.key!r}")

    @property
    def seconds(self) -> float:
        """The period in seconds."""
        from tether.durations import seconds

        return seconds(self.period, "RateLimit period")

    @property
    def scope(self) -> str:
        """How the stored limit is keyed: "queue", "concurrency_key" or "payload"."""
        if self.key is None:
            return "queue"
        return "concurrency_key" if self.key == "concurrency_key" else "payload"

    def key_of(self, task_id: str, payload: Any) -> str | None:
        """The run's rate key when the limit is keyed by a function of the payload (else None).
        A function that raises or returns anything but a non-empty string is a clear error."""
        if self.key is None or isinstance(self.key, str) or self.key is stored_key:
            return None
        try:
            value = self.key(payload)
        except Exception as exc:
            raise ConfigurationError(
                f"the rate limit key function of task {task_id!r} raised "
                f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(value, str) or not value or "\x00" in value or len(value) > 512:
            raise ConfigurationError(
                f"the rate limit key function of task {task_id!r} must return a string of 1 to "
                f"512 characters without NUL, got {value!r}")
        return value


@dataclass(frozen=True)
class Queue:
    """A named queue. `concurrency` caps how many of its runs execute at once, across all workers.

    With a `concurrency_key` on a trigger, the cap applies per key (per customer) instead, and
    `total_concurrency` caps the runs of all keys together; free places go to the keys in turn.
    `rate_limit` caps how many of its runs start per period (see RateLimit).

    `max_queued`: at most this many of the queue's runs may wait to start (QUEUED or DELAYED);
    a trigger beyond it raises `QueueFull` and stores nothing (HTTP 429).
    `on_key_limit` (needs `concurrency`): what a trigger does when its key already has
    `concurrency` runs queued or executing. "queue" (the default): the new run waits its turn.
    "cancel_in_progress": the key's oldest runs are canceled so the newest `concurrency` remain
    (the new run takes the place of the one it replaces). "cancel_newest": the new run is stored
    CANCELED at once, with the reason, and never runs.
    """

    name: str
    concurrency: int | None = None
    rate_limit: RateLimit | None = None
    total_concurrency: int | None = None
    # flow control (issue 22): queue length limit and per-key strategy
    max_queued: int | None = None
    on_key_limit: str = "queue"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or len(self.name) > 128:
            raise ConfigurationError("Queue name must be 1 to 128 characters")
        if self.concurrency is not None and (not _is_int(self.concurrency) or self.concurrency < 1):
            raise ConfigurationError(f"Queue concurrency must be >= 1 or None, got {self.concurrency!r}")
        if self.rate_limit is not None and not isinstance(self.rate_limit, RateLimit):
            raise ConfigurationError(
                f"Queue rate_limit must be a tether.RateLimit, got {self.rate_limit!r}")
        total = self.total_concurrency
        if total is not None:
            if not _is_int(total) or total < 1:
                raise ConfigurationError(
                    f"Queue total_concurrency must be >= 1 or None, got {total!r}")
            if self.concurrency is None or total < self.concurrency:
                raise ConfigurationError(
                    f"Queue total_concurrency ({total}) caps the runs of all concurrency keys "
                    f"together: it needs a per-key concurrency, at most total_concurrency "
                    f"(got concurrency={self.concurrency})")
        if self.max_queued is not None and (not _is_int(self.max_queued) or self.max_queued < 1):
            raise ConfigurationError(
                f"Queue max_queued must be an integer >= 1 or None, got {self.max_queued!r}")
        if self.on_key_limit not in ON_KEY_LIMIT:
            raise ConfigurationError(f"Queue on_key_limit must be one of {', '.join(ON_KEY_LIMIT)}, "
                                     f"got {self.on_key_limit!r}")
        if self.on_key_limit != "queue" and self.concurrency is None:
            raise ConfigurationError(
                f"Queue {self.name!r}: on_key_limit={self.on_key_limit!r} needs a concurrency "
                "limit (it acts when a key has `concurrency` runs queued or executing)")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Debounce:
    """A trigger option: triggers of one task with the same `key` within `delay` of each other
    collapse into one run, which starts `delay` after the last of them (never later than
    `max_delay` after the first, if given). `mode="trailing"` runs with the last payload,
    `"leading"` with the first. Triggers after the run started make a new run."""

    key: str
    delay: float | str | Any  # seconds, "30s"/"5m", or a timedelta
    mode: str = "trailing"
    max_delay: float | str | Any | None = None

    def __post_init__(self) -> None:
        from tether.durations import seconds

        if not isinstance(self.key, str) or not 0 < len(self.key) <= 512:
            raise ConfigurationError(f"Debounce key must be 1 to 512 characters, got {self.key!r}")
        if self.mode not in ("trailing", "leading"):
            raise ConfigurationError(f"Debounce mode must be 'trailing' or 'leading', got {self.mode!r}")
        if seconds(self.delay, "Debounce delay") <= 0:
            raise ConfigurationError("Debounce delay must be positive")
        if self.max_delay is not None and seconds(self.max_delay, "Debounce max_delay") < seconds(
                self.delay, "Debounce delay"):
            raise ConfigurationError("Debounce max_delay must be at least its delay")


class BatchItem:
    """One item of `batch_trigger` with options of its own: `BatchItem(payload, tags=[...])`."""

    def __init__(self, payload: Any, **options: Any) -> None:
        self.payload = payload
        self.options = options
