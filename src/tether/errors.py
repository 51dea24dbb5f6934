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


class PayloadError(TetherError):
    """A payload is not JSON, or does not validate against the task's payload model."""


class SerializationError(TetherError):
    """A value returned by a task or step cannot be stored as JSON."""


class RunNotFound(TetherError):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run with id {run_id!r}")
        self.run_id = run_id


class InvalidTransition(TetherError):
    """The requested change does not apply to a run in its current status."""


class StorageUnavailable(TetherError):
    """The database cannot be opened or reached."""


class AbortRun(Exception):
    """Raise inside a task to fail the run at once, without retrying."""


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
        message = (error or {}).get("message") or status.lower()
        super().__init__(f"run {run_id} ended {status}: {message}")
        self.run_id = run_id
        self.status = status
        self.error = error


class LeaseLost(Exception):
    """This worker no longer owns the run (it was canceled, timed out or taken over)."""
