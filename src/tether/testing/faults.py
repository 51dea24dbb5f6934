"""Fault injection for tether.testing: rules that stand in for step functions (a failure, a
given result) or stop an attempt as if its worker died. The AttemptRunner asks them through the
engine's StepHooks (engine/faults.py) for every step and `once` that is about to execute; a
step whose result is stored never asks.

A rule names a step by name ("charge": every occurrence) or by key ("charge#2": the second
call of that name in a run), optionally only in runs of one task."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from tether.engine.faults import Moment
from tether.storage.records import RunRecord

Kind = Literal["fail", "crash", "override"]


class InjectedFault(Exception):
    """The error `fail_step` raises in place of a step's function unless given another."""


class TestingError(Exception):
    """tether.testing was used in a way that cannot work (an unknown task, a fault that never
    matched a step, ...)."""

    __test__ = False  # (not a test class, whatever pytest's naming rules say)


@dataclass
class Rule:
    kind: Kind
    step: str  # a name ("charge") or a key ("charge#2")
    task: str | None
    times: int | None  # None: every time
    error: BaseException | type[BaseException] | None = None
    result: Any = None
    when: Moment = "before"
    used: int = 0
    runs: list[str] = field(default_factory=list)  # the runs it struck, in order

    def describe(self) -> str:
        scope = f", task={self.task!r}" if self.task else ""
        if self.kind == "fail":
            return f"fail_step({self.step!r}, times={self.times}{scope})"
        if self.kind == "crash":
            return f"crash_at({self.step!r}, when={self.when!r}, times={self.times}{scope})"
        return f"override_step({self.step!r}, ...{scope})"

    def matches(self, run: RunRecord, key: str, name: str) -> bool:
        return ((self.step == key or self.step == name)
                and (self.task is None or self.task == run.task_id)
                and (self.times is None or self.used < self.times))

    def raise_error(self, key: str) -> None:
        error = self.error
        if error is None:
            raise InjectedFault(f"fail_step: injected failure {self.used} of {self.times} at "
                                f"step {key!r}")
        if isinstance(error, type):
            raise error(f"fail_step: injected failure {self.used} of {self.times} at step {key!r}")
        try:
            fresh = copy.copy(error)  # each failure its own exception (and traceback)
        except Exception:
            fresh = error  # (an exception that cannot be copied is raised itself)
        raise fresh


def step_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TestingError(f"{what} needs a step name such as 'charge' (or 'charge#2' for its "
                           f"second call in a run); got {value!r}")
    return value


def times_count(value: Any, what: str, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        none = " or None (every time)" if allow_none else ""
        raise TestingError(f"{what}: times must be a whole number from 1{none}; got {value!r}")
    return value


def error_value(value: Any) -> BaseException | type[BaseException] | None:
    if value is None or isinstance(value, BaseException):
        return value
    if isinstance(value, type) and issubclass(value, Exception):
        return value
    raise TestingError("fail_step: error must be an exception (an instance, or a class called "
                       f"with a message); got {value!r}")


class Faults:
    """The rules of one test environment, and what they did (StepHooks for the engine)."""

    def __init__(self) -> None:
        self.rules: list[Rule] = []
        self.seen: dict[str, set[str]] = {}  # task id -> the step keys that executed
        # the attempts an injected crash stopped, in order: (run id, attempt, step key)
        self.crashed: list[tuple[str, int, str]] = []
        self._lock = threading.Lock()  # (sync tasks execute on threads)

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        """Forget every rule (what they did stays on record)."""
        with self._lock:
            self.rules.clear()

    def _take(self, kinds: tuple[Kind, ...], run: RunRecord, key: str, name: str,
              when: Moment | None = None) -> Rule | None:
        """The first rule that applies here now, counted as used once more."""
        with self._lock:
            for rule in self.rules:
                if rule.kind in kinds and rule.matches(run, key, name) and (
                        when is None or rule.when == when):
                    rule.used += 1
                    rule.runs.append(run.id)
                    return rule
        return None

    # -- StepHooks ----------------------------------------------------------------------------
    def target(self, run: RunRecord, key: str, name: str, kind: str,
               fn: Callable[..., Any]) -> Callable[..., Any]:
        with self._lock:
            self.seen.setdefault(run.task_id, set()).add(key)
            if not any(r.kind != "crash" and r.matches(run, key, name) for r in self.rules):
                return fn  # (checked again at each call: a retry in place may find one)

        def stand_in(*args: Any, **kwargs: Any) -> Any:
            rule = self._take(("fail", "override"), run, key, name)
            if rule is None:
                return fn(*args, **kwargs)
            if rule.kind == "fail":
                rule.raise_error(key)
            return copy.deepcopy(rule.result)

        return stand_in

    def crash(self, run: RunRecord, attempt: int, key: str, name: str, kind: str,
              moment: Moment) -> bool:
        if self._take(("crash",), run, key, name, moment) is None:
            return False
        with self._lock:
            self.crashed.append((run.id, attempt, key))
        return True

    def pause(self, seconds: float) -> float:
        return 0.0  # retries in place do not wait in a test (the clock is the env's)

    # -- after the test -----------------------------------------------------------------------
    def unused(self) -> list[str]:
        """One line per rule that never struck, with the steps that did execute."""
        with self._lock:
            lines = []
            for rule in self.rules:
                if rule.used:
                    continue
                keys = sorted(k for t, ks in self.seen.items()
                              if rule.task is None or t == rule.task for k in ks)
                lines.append(f"{rule.describe()} matched no step that executed; the steps that "
                             f"did: {', '.join(keys) or 'none'}")
            return lines
