"""Where a test can reach into step execution (tether.testing's fault injection): the hooks an
AttemptRunner may hold, asked by each step or `once` that is about to execute (a stored one
returns its result without asking). Production workers hold none, and each step pays a few
`is None` checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol

from tether.errors import LeaseLost
from tether.storage.records import RunRecord

Moment = Literal["before", "after"]


class WorkerDied(LeaseLost):
    """The attempt stops here as if its worker's process died: nothing more of it is written
    (no failure, no ending); the run keeps its lease until that lapses, then it is taken over
    like the run of any dead worker."""

    def __init__(self, run_id: str, key: str, moment: Moment) -> None:
        where = ("before its function was called" if moment == "before"
                 else "after its function returned, before its result was stored")
        super().__init__(f"run {run_id}: the worker died at step {key!r}, {where}")
        self.run_id, self.key, self.moment = run_id, key, moment


class StepHooks(Protocol):
    def target(self, run: RunRecord, key: str, name: str, kind: str,
               fn: Callable[..., Any]) -> Callable[..., Any]:
        """The function this step calls: `fn` itself, or one standing in for it (one that
        raises, or returns a given result). Asked once per execution of the step."""
        ...

    def crash(self, run: RunRecord, attempt: int, key: str, name: str, kind: str,
              moment: Moment) -> bool:
        """Whether attempt number `attempt` dies at this step: "before" its function is first called, or
        "after" it returned, before its result is stored."""
        ...

    def pause(self, seconds: float) -> float:
        """How long to really wait before a retry in place that the step's policy delays
        `seconds`."""
        ...
