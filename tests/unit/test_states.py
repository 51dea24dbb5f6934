"""The run state machine: what follows a failed attempt, and which statuses a transition leaves."""

from __future__ import annotations

import pytest

from tether.engine import states
from tether.models import FINAL_STATUSES, RunStatus
from tether.options import Retry

S = RunStatus
POLICY = Retry(max_attempts=3, min_delay=2.0, factor=3.0, max_delay=100.0, jitter=False)


def test_failed_attempt_with_attempts_left_is_queued_after_the_delay() -> None:
    t = states.attempt_failed(attempt=1, max_attempts=3, policy=POLICY, error_json='{"m":1}',
                              now=1000.0)
    assert t.to == S.QUEUED
    assert t.available_at == 1002.0
    assert t.error == '{"m":1}' and t.attempt_outcome == "FAILED"
    assert not t.is_final
    assert "attempt 1 of 3" in t.reason and "retrying in 2s" in t.reason


def test_second_failure_waits_longer() -> None:
    t = states.attempt_failed(attempt=2, max_attempts=3, policy=POLICY, error_json="{}", now=1000.0)
    assert t.to == S.QUEUED and t.available_at == 1006.0


def test_jittered_delay_uses_the_injected_rand() -> None:
    policy = Retry(min_delay=4.0, jitter=True)
    t = states.attempt_failed(attempt=1, max_attempts=2, policy=policy, error_json="{}", now=0.0,
                              rand=lambda: 0.0)
    assert t.available_at == 2.0


@pytest.mark.parametrize(("attempt", "max_attempts"), [(3, 3), (4, 3), (1, 1)])
def test_no_attempts_left_fails_the_run(attempt: int, max_attempts: int) -> None:
    t = states.attempt_failed(attempt=attempt, max_attempts=max_attempts, policy=POLICY,
                              error_json='{"m":2}', now=1000.0)
    assert t.to == S.FAILED and t.is_final
    assert t.available_at is None
    assert t.error == '{"m":2}'
    assert "no attempts left" in t.reason


def test_crash_outcome_is_recorded() -> None:
    t = states.attempt_failed(attempt=1, max_attempts=2, policy=POLICY, error_json="{}", now=0.0,
                              outcome="CRASHED")
    assert t.attempt_outcome == "CRASHED" and "crashed" in t.reason


def test_sources() -> None:
    assert set(states.sources(S.CANCELED)) == {S.DELAYED, S.QUEUED, S.EXECUTING, S.WAITING}
    assert set(states.sources(S.EXPIRED)) == {S.DELAYED, S.QUEUED}
    assert set(states.sources(S.COMPLETED)) == {S.EXECUTING}
    assert set(states.sources(S.EXECUTING)) == {S.DELAYED, S.QUEUED}
    assert set(states.sources(S.QUEUED)) == {S.DELAYED, S.EXECUTING, S.WAITING, S.FAILED,
                                             S.TIMED_OUT, S.CANCELED}
    # a DELAYED run may be rescheduled (DELAYED -> DELAYED)
    assert S.DELAYED in states.sources(S.DELAYED)


def test_completed_and_expired_are_terminal() -> None:
    for status in (S.COMPLETED, S.EXPIRED):
        assert all(status not in states.sources(to) for to in RunStatus)


def test_final_statuses_match_transition_flags() -> None:
    assert states.succeeded("1").is_final
    assert states.canceled("x").is_final and states.expired().is_final
    assert states.timed_out("{}", 5).is_final and states.aborted("{}", "why").is_final
    assert not states.reopened(0.0, "r").is_final and not states.promoted().is_final
    assert {t.to for t in (states.succeeded("1"), states.canceled("x"), states.expired(),
                           states.timed_out("{}", 1), states.aborted("{}", "y"))} == FINAL_STATUSES


def test_handed_back_refunds_the_attempt_and_keeps_the_place() -> None:
    t = states.handed_back()
    assert t.to == S.QUEUED and t.refund_attempt and t.available_at is None
    assert t.attempt_outcome == "RELEASED"


def test_a_crash_is_retried_at_once_in_its_place() -> None:
    t = states.crashed(attempt=1, max_attempts=3, error_json="{}")
    assert (t.to, t.available_at, t.refund_attempt, t.attempt_outcome) == (
        S.QUEUED, None, False, "CRASHED")
    assert "attempt 1 of 3 crashed" in t.reason
    last = states.crashed(attempt=3, max_attempts=3, error_json="{}")
    assert last.to == S.FAILED and last.attempt_outcome == "CRASHED"


def test_timed_out_reason_names_the_limit() -> None:
    t = states.timed_out("{}", 0.25)
    assert t.to == S.TIMED_OUT and "0.25s" in t.reason and t.attempt_outcome == "TIMED_OUT"


def test_a_run_leaving_the_line_is_not_counted_and_says_why() -> None:
    t = states.left_the_line("the worker shut down")
    assert (t.to, t.available_at, t.refund_attempt, t.attempt_outcome) == (
        states.S.QUEUED, None, True, "RELEASED")
    assert "held in line" in t.reason and "the worker shut down" in t.reason
