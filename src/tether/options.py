"""Frozen option objects written next to a task or a trigger: retry policy, queue, debounce."""

from __future__ import annotations

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


@dataclass(frozen=True)
class Queue:
    """A named queue. `concurrency` caps how many of its runs execute at once, across all workers.

    With a `concurrency_key` on a trigger, the cap applies per key (per customer) instead.

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
    # flow control (issue 22): queue length limit and per-key strategy
    max_queued: int | None = None
    on_key_limit: str = "queue"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or len(self.name) > 128:
            raise ConfigurationError("Queue name must be 1 to 128 characters")
        if self.concurrency is not None and (not _is_int(self.concurrency) or self.concurrency < 1):
            raise ConfigurationError(f"Queue concurrency must be >= 1 or None, got {self.concurrency!r}")
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
