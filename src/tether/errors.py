"""Exceptions users see. Every error Tether raises on purpose derives from `TetherError`."""

from __future__ import annotations

from typing import Any


class TetherError(Exception):
    """Base class for errors raised by Tether itself (bad input, unknown task, storage trouble)."""


class ConfigurationError(TetherError):
    """The app, a task definition or a setting is invalid."""


class UnknownTask(TetherError):
    """A task id that no code or worker has registered."""

    def __init__(self, task_id: str, known: list[str]) -> None:
        listed = ", ".join(sorted(known)) if known else "none registered yet (start a worker first)"
        super().__init__(f"unknown task {task_id!r}; known tasks: {listed}")
        self.task_id = task_id
        self.known = known


class AbortRun(Exception):
    """Raise inside a task to fail the run at once, without retrying."""


class PayloadError(TetherError):
    """A payload (or token data, metadata) is not JSON Tether stores, or does not validate
    against the task's payload model."""


class SerializationError(TetherError):
    """A value returned by a task or step cannot be stored as JSON."""


class PayloadNotStorable(PayloadError, SerializationError):
    """A payload, token data or metadata is not JSON that every reader can read back: nested
    deeper than 100 levels, holding a lone surrogate, NaN or Infinity, or a value JSON has no
    form for. Refused before anything is stored (HTTP 400)."""


class TooLarge(TetherError):
    """A value's JSON is larger than the app's limit for it. `size` and `limit` are in bytes,
    `setting` names the limit (max_payload_size or max_output_size); a client only knows the
    server's message, so there they may be None."""

    def __init__(self, message: str, size: int | None = None, limit: int | None = None,
                 setting: str | None = None) -> None:
        super().__init__(message)
        self.size, self.limit, self.setting = size, limit, setting


class PayloadTooLarge(TooLarge, PayloadError):
    """A payload, token data, metadata or payload packet is over `max_payload_size`. Nothing is
    stored (HTTP 413)."""


class OutputTooLarge(TooLarge, SerializationError, AbortRun):
    """A task's return value, a step's result or a checkpoint is over `max_output_size`. Another
    attempt would produce as much, so the run fails at once, like AbortRun."""


class QueueFull(TetherError):
    """A trigger would take a queue past its `max_queued` runs waiting to start (QUEUED or
    DELAYED). Nothing is stored (HTTP 429); try again once the workers caught up. `queue`,
    `count` (runs waiting before the trigger) and `limit`; a client only knows the server's
    message, so there they are None."""

    def __init__(self, message: str, queue: str | None = None, count: int | None = None,
                 limit: int | None = None) -> None:
        super().__init__(message)
        self.queue, self.count, self.limit = queue, count, limit

    @classmethod
    def of(cls, queue: str, count: int, limit: int, adding: int = 1) -> QueueFull:
        more = "" if adding == 1 else f" (this trigger adds {adding})"
        return cls(f"queue {queue!r} is full: {count} runs are waiting to start and its "
                   f"max_queued is {limit}{more}; nothing was stored", queue, count, limit)


class QueueNotFound(TetherError):
    """No queue of that name is known (queues appear when a worker starts or a task of theirs
    is triggered)."""

    def __init__(self, queue: str) -> None:
        super().__init__(f"no queue named {queue!r} (queues appear when a worker starts or a "
                         "task is triggered)")
        self.queue = queue


class RunNotFound(TetherError):
    """No run has this id."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run with id {run_id!r}")
        self.run_id = run_id


class StepNotFound(TetherError):
    """A run has stored no durable call by this name (`runs.fork`'s `from_step`)."""

    def __init__(self, run_id: str, step: str, detail: str) -> None:
        super().__init__(f"run {run_id} stored no durable call named {step!r}; {detail}")
        self.run_id, self.step = run_id, step


class InvalidTransition(TetherError):
    """The requested change does not apply to a run in its current status."""


class StorageUnavailable(TetherError):
    """The database cannot be opened or reached."""


class OnceInterrupted(Exception):
    """A `ctx.once` step started in an earlier attempt that never recorded its result.

    Tether cannot know whether its side effect happened, so the run fails for a person to decide.
    """

    def __init__(self, step: str) -> None:
        super().__init__(
            f"once step {step!r} started in an earlier attempt and did not finish; "
            "its side effect may or may not have happened, so it is not run again"
        )
        self.step = step


class RunFailed(TetherError):
    """A run ended without an output: failed, canceled, timed out or expired."""

    def __init__(self, run_id: str, status: str, error: dict[str, Any] | None) -> None:
        # the error as `tether runs show` writes it: `KeyError: 'timestamp'`
        kind, message = (error or {}).get("type"), (error or {}).get("message")
        reason = f"{kind}: {message}" if kind and message else message or kind or status.lower()
        super().__init__(f"run {run_id} ended {status}: {reason}")
        self.run_id = run_id
        self.status = status
        self.error = error


class LeaseLost(Exception):
    """This worker no longer owns the run (it was canceled, timed out or taken over)."""


class WaitTimeout(TetherError):
    """Raised inside a run by `ctx.wait_for_token` when the token timed out before completion."""

    def __init__(self, token_id: str, timeout_at: float | None) -> None:
        super().__init__(f"token {token_id} was not completed before its timeout")
        self.token_id = token_id
        self.timeout_at = timeout_at


class TokenNotFound(TetherError):
    """No token has this id."""

    def __init__(self, token_id: str) -> None:
        super().__init__(f"no token with id {token_id!r}")
        self.token_id = token_id


class TokenRunEnded(TetherError):
    """Completing a token that nothing waits for any more: the run that created it ended
    (canceled, failed...) and no other run waits for it. The token is left as it was."""

    def __init__(self, token_id: str, run_id: str, status: str) -> None:
        super().__init__(f"token {token_id} was not completed: run {run_id}, which created it, "
                         f"ended {status}, and no run waits for it")
        self.token_id, self.run_id, self.status = token_id, run_id, status


class TokenTimedOut(TetherError):
    """Completing a token whose timeout already passed: the waiting run has moved on."""

    def __init__(self, token_id: str) -> None:
        super().__init__(f"token {token_id} timed out; it can no longer be completed")
        self.token_id = token_id


class ReplayMismatch(AbortRun):
    """A resumed run's code reached a different durable call than the one stored at that position:
    its code changed while it ran. The run fails instead of mixing stored results into new code."""

    def __init__(self, step: str, detail: str) -> None:
        super().__init__(
            f"the run's code changed since it last ran: {detail}; stored results cannot be "
            f"matched to the new code (at step {step!r}). Deploy the old code and retry the run, "
            "or replay it to start over")
        self.step = step


class ScheduleNotFound(TetherError):
    """No schedule has this id."""

    def __init__(self, schedule_id: str) -> None:
        super().__init__(f"no schedule with id {schedule_id!r}")
        self.schedule_id = schedule_id


class AuthenticationError(TetherError):
    """The HTTP API refused the request's API key: missing, unknown or revoked (401/403)."""


class ServerUnavailable(StorageUnavailable):
    """A Tether server cannot be reached (connection refused, timed out) or said it is unavailable
    (5xx) after the client's retries."""


class RequestFailed(TetherError):
    """The HTTP API answered with an error that no other Tether exception describes."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code


class ObjectStoreUnavailable(StorageUnavailable):
    """The object store holding large values cannot be written or read (its location is named)."""


class NoRunContext(TetherError):
    """`tether.current_context()` (or `current_sync_context()`) was called where no run of that
    flavour executes: outside a task, or in a task of the other flavour."""
class UnknownRateLimit(TetherError):
    """No named rate limit has this name (`app.rate_limits.set` creates one)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no rate limit named {name!r}; create it with "
                         f"app.rate_limits.set({name!r}, limit, period)")
        self.name = name


MAX_RETRY_AFTER = 86400.0  # the longest RetryAfter: one day


class RetryAfter(Exception):
    """Raise from a task or a step to say that what it calls is overloaded: try again in
    `seconds` (a number, or a timedelta; at most a day). The run goes back to its queue until
    then without counting an attempt, and its queue's key (its concurrency key, or its rate key)
    is paused until then: no other run of that key starts, runs of other keys go on. After
    `backpressure.MAX_DEFERRALS` of them in a row the run counts a failed attempt, so a run
    that is told to wait for ever still ends. `reason` is kept with the paused key."""

    def __init__(self, seconds: Any, reason: str | None = None) -> None:
        from datetime import timedelta
        from math import isfinite

        value = seconds.total_seconds() if isinstance(seconds, timedelta) else seconds
        if isinstance(value, bool) or not isinstance(value, int | float) or not isfinite(value):
            raise ConfigurationError(
                f"RetryAfter takes a number of seconds or a timedelta; got {seconds!r}")
        if not 0 <= value <= MAX_RETRY_AFTER:
            raise ConfigurationError(
                f"RetryAfter takes 0 to {MAX_RETRY_AFTER:g} seconds (a day); got {seconds!r} "
                "(for a longer wait, use ctx.sleep)")
        if reason is not None and not isinstance(reason, str):
            raise ConfigurationError(f"RetryAfter's reason must be text; got {reason!r}")
        self.seconds = float(value)
        self.reason = reason
        super().__init__(reason or f"retry after {self.seconds:g}s")
