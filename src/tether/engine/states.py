"""The run state machine, in one place.

Every change of a run's status is one of the `Transition`s built here; storage applies it atomically,
guarded by the statuses it may leave from, and records it as a trace event with time and reason.

    DELAYED -> QUEUED -> EXECUTING <-> WAITING
    EXECUTING -> QUEUED (retry after a failed or crashed attempt, or handed back on shutdown)
    EXECUTING -> COMPLETED | FAILED | TIMED_OUT | CANCELED
    DELAYED | QUEUED -> CANCELED | EXPIRED
    FAILED | TIMED_OUT | CANCELED -> QUEUED (an explicit retry)
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from tether.engine.backoff import retry_delay
from tether.models import FINAL_STATUSES, RunStatus
from tether.options import Retry

S = RunStatus

ALLOWED: dict[RunStatus, frozenset[RunStatus]] = {
    S.DELAYED: frozenset({S.DELAYED, S.QUEUED, S.EXECUTING, S.CANCELED, S.EXPIRED}),
    S.QUEUED: frozenset({S.EXECUTING, S.CANCELED, S.EXPIRED, S.DELAYED}),
    S.EXECUTING: frozenset(
        {S.QUEUED, S.WAITING, S.COMPLETED, S.FAILED, S.TIMED_OUT, S.CANCELED}
    ),
    S.WAITING: frozenset({S.QUEUED, S.CANCELED, S.FAILED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset({S.QUEUED}),
    S.TIMED_OUT: frozenset({S.QUEUED}),
    S.CANCELED: frozenset({S.QUEUED}),
    S.EXPIRED: frozenset(),
}


def sources(to: RunStatus) -> tuple[RunStatus, ...]:
    """The statuses a run may be in for a transition to `to` to apply."""
    return tuple(sorted(s for s, targets in ALLOWED.items() if to in targets))


@dataclass(frozen=True)
class Transition:
    """A change of status decided by the engine and applied by storage.

    `attempt_outcome` closes the current attempt (for transitions out of EXECUTING);
    `refund_attempt` gives the attempt back (a graceful hand-back is not counted).
    """

    to: RunStatus
    reason: str
    output: str | None = None
    error: str | None = None
    available_at: float | None = None
    attempt_outcome: str | None = None
    refund_attempt: bool = False
    waiting_for: str | None = None

    @property
    def is_final(self) -> bool:
        return self.to in FINAL_STATUSES


def succeeded(output_json: str) -> Transition:
    return Transition(S.COMPLETED, "completed", output=output_json, attempt_outcome="COMPLETED")


def attempt_failed(
    *,
    attempt: int,
    max_attempts: int,
    policy: Retry,
    error_json: str,
    now: float,
    outcome: str = "FAILED",
    rand: Callable[[], float] = random.random,
) -> Transition:
    """After a failed (or crashed) attempt: retry later with backoff, or fail the run for good."""
    if attempt >= max_attempts:
        reason = f"attempt {attempt} of {max_attempts} {outcome.lower()}; no attempts left"
        return Transition(S.FAILED, reason, error=error_json, attempt_outcome=outcome)
    delay = retry_delay(policy, attempt, rand)
    reason = f"attempt {attempt} of {max_attempts} {outcome.lower()}; retrying in {delay:.3g}s"
    return Transition(
        S.QUEUED, reason, error=error_json, available_at=now + delay, attempt_outcome=outcome
    )


def crashed(*, attempt: int, max_attempts: int, error_json: str) -> Transition:
    """The worker died during the attempt. A crash says nothing about the task's code, so the
    run is retried at once and keeps its place in its queue (`available_at` unchanged: ahead of
    the runs queued after it), and recovery never waits behind a backlog. `max_attempts` still
    ends a run that kills its worker every time."""
    if attempt >= max_attempts:
        reason = f"attempt {attempt} of {max_attempts} crashed; no attempts left"
        return Transition(S.FAILED, reason, error=error_json, attempt_outcome="CRASHED")
    reason = f"attempt {attempt} of {max_attempts} crashed; retrying now, in its place in the queue"
    return Transition(S.QUEUED, reason, error=error_json, attempt_outcome="CRASHED")


def aborted(error_json: str, reason: str) -> Transition:
    return Transition(S.FAILED, reason, error=error_json, attempt_outcome="FAILED")


def timed_out(error_json: str, limit: float) -> Transition:
    return Transition(
        S.TIMED_OUT, f"exceeded max_duration of {limit:g}s", error=error_json,
        attempt_outcome="TIMED_OUT",
    )


def handed_back(reason: str = "worker shut down before the attempt finished; "
                                           "handed back, not counted") -> Transition:
    """Back to the queue, the attempt not counted, in the run's place (`available_at` kept)."""
    return Transition(S.QUEUED, reason, attempt_outcome="RELEASED", refund_attempt=True)


def deferred(available_at: float, reason: str, error_json: str | None = None) -> Transition:
    """Back-pressure (RetryAfter, an HTTP 429/503 with Retry-After): back to the queue until
    `available_at`, the attempt not counted (its row says DEFERRED, with the error that said
    so)."""
    return Transition(S.QUEUED, reason, error=error_json, available_at=available_at,
                      attempt_outcome="DEFERRED", refund_attempt=True)


def left_the_line(why: str) -> Transition:
    """A run a worker held in line goes back to the queue without having started."""
    return handed_back(f"held in line by a worker and not started ({why}); back in the "
                            "queue, not counted")


def canceled(reason: str) -> Transition:
    return Transition(S.CANCELED, reason, attempt_outcome="CANCELED")


def expired() -> Transition:
    return Transition(S.EXPIRED, "ttl passed before the run started")


def reopened(now: float, reason: str) -> Transition:
    return Transition(S.QUEUED, reason, available_at=now)


def suspended(until: float, waiting_for: str | None, reason: str) -> Transition:
    """The run's code reached a wait that is not over: park it until `until` (or until what it
    waits for is done). The run stays on its attempt: the claim that resumes it does not count
    a new one (`waiting_for` tells it), so a waiting run shows the attempt it is on."""
    return Transition(S.WAITING, reason, available_at=until, attempt_outcome="SUSPENDED",
                      waiting_for=waiting_for)


def resumed(reason: str) -> Transition:
    return Transition(S.QUEUED, reason)


def promoted() -> Transition:
    return Transition(S.QUEUED, "delay passed")


def rescheduled(available_at: float) -> Transition:
    return Transition(S.DELAYED, "rescheduled", available_at=available_at)
