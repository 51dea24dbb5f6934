"""tether.testing's fault injection through pytest: fail_step with the run's retries and with
retries in place, crash_at resuming from stored steps (before and after the function; `once`),
override_step, on async and sync tasks."""

from __future__ import annotations

import pytest
from kit_support import kit

pytest_plugins = ["pytester"]

CHECKOUT = '''
CALLS: list[str] = []


class CardDeclined(Exception):
    pass


def call(name: str, value: Any = None) -> Any:
    CALLS.append(name)
    return value if value is not None else f"{name}-ok"


@app.task(retry=Retry(max_attempts=3, min_delay=10, jitter=False))
async def checkout(order: dict, ctx: Context) -> dict:
    reserved = await ctx.step("reserve", call, "reserve")
    charged = await ctx.step("charge", call, "charge")
    shipped = await ctx.step("ship", call, "ship")
    return {"reserve": reserved, "charge": charged, "ship": shipped}


@app.task(retry=Retry(max_attempts=3, min_delay=10, jitter=False))
def checkout_sync(order: dict, ctx: SyncContext) -> dict:
    reserved = ctx.step("reserve", call, "reserve")
    charged = ctx.step("charge", call, "charge")
    shipped = ctx.step("ship", call, "ship")
    return {"reserve": reserved, "charge": charged, "ship": shipped}


@app.task(retry=Retry(max_attempts=1))
async def patient(order: dict, ctx: Context) -> str:
    return await ctx.step("charge", call, "charge", retry=Retry(max_attempts=3, min_delay=30))


@app.task(retry=Retry(max_attempts=3))
async def pay_once(order: dict, ctx: Context) -> str:
    return await ctx.once("charge", call, "charge")


@app.task
async def installments(order: dict, ctx: Context) -> list[str]:
    paid = [await ctx.step("charge", call, "charge-1")]
    await ctx.sleep("30d")
    paid.append(await ctx.step("charge", call, "charge-2"))
    return paid


@app.task
async def careless(order: dict, ctx: Context) -> str:
    try:
        await ctx.step("charge", call, "charge")
    except Exception:
        pass  # swallows everything, a crash included
    return "went on"
'''

HEADER = '''
import pytest
from tether import RunStatus
from tether.testing import InjectedFault
from tasks import (CALLS, CardDeclined, careless, checkout, checkout_sync, installments,
                   patient, pay_once)


@pytest.fixture(autouse=True)
def fresh_calls():
    CALLS.clear()


TASKS = pytest.mark.parametrize("task", [checkout, checkout_sync])
'''


def test_fail_step_drives_the_runs_retries(pytester: pytest.Pytester) -> None:
    result = kit(pytester, CHECKOUT, HEADER + '''

@TASKS
def test_twice_then_through(tether_env, task):
    tether_env.fail_step("charge", times=2, error=CardDeclined("card declined"))
    run = tether_env.run(task, {"id": 1})
    assert run.status == RunStatus.QUEUED and run.attempts == 1
    assert "card declined" in run.error["message"] and run.error["type"] == "tasks.CardDeclined"
    tether_env.advance("10s")  # the first retry fails too
    assert tether_env.retrieve(run).attempts == 2
    tether_env.advance("20s")
    done = tether_env.retrieve(run)
    assert done.status == RunStatus.COMPLETED and done.attempts == 3
    assert CALLS == ["reserve", "charge", "ship"]  # reserve ran once; charge only when let
    assert tether_env.steps(run)["charge"] == {"status": "COMPLETED", "result": "charge-ok",
                                               "attempt": 3, "kind": "step"}


@TASKS
def test_more_failures_than_attempts(tether_env, task):
    tether_env.fail_step("charge", times=5)
    run = tether_env.run(task, {"id": 2})
    tether_env.advance("1h")
    failed = tether_env.retrieve(run)
    assert failed.status == RunStatus.FAILED and failed.attempts == 3
    assert failed.error["type"] == "tether.testing.faults.InjectedFault"
    assert "injected failure 3 of 5 at step 'charge'" in failed.error["message"]


def test_retries_in_place_do_not_wait(tether_env):
    tether_env.fail_step("charge", times=2, error=TimeoutError)
    run = tether_env.run(patient, {"id": 3})
    assert run.status == RunStatus.COMPLETED and run.attempts == 1 and run.output == "charge-ok"
    assert CALLS == ["charge"]


def test_a_named_occurrence_and_a_task_filter(tether_env):
    tether_env.fail_step("ship", task=checkout_sync)
    run = tether_env.run(checkout, {"id": 4})
    assert run.status == RunStatus.COMPLETED  # the rule is for the other task
    failed = tether_env.run(checkout_sync, {"id": 4})
    assert failed.status == RunStatus.QUEUED and "ship" in failed.error["message"]
''')
    result.assert_outcomes(passed=6)


def test_crash_at_resumes_from_the_stored_steps(pytester: pytest.Pytester) -> None:
    result = kit(pytester, CHECKOUT, HEADER + '''

@TASKS
def test_before_the_function(tether_env, task):
    tether_env.crash_at("charge")
    run = tether_env.run(task, {"id": 1})
    assert run.status == RunStatus.EXECUTING  # the worker "died": nothing ended the attempt
    assert CALLS == ["reserve"]
    tether_env.advance(tether_env.lease_seconds - 1)
    assert tether_env.retrieve(run).status == RunStatus.EXECUTING  # its lease still holds
    tether_env.advance("2s")  # the lease lapsed: taken over, retried, resumed
    done = tether_env.retrieve(run)
    assert done.status == RunStatus.COMPLETED and done.attempts == 2
    assert CALLS == ["reserve", "charge", "ship"]  # reserve was stored: not called again
    attempts = tether_env.app.storage.list_attempts(run.id)
    assert [a.status for a in attempts] == ["CRASHED", "COMPLETED"]
    steps = tether_env.steps(run)
    assert [steps[k]["attempt"] for k in ("reserve", "charge", "ship")] == [1, 2, 2]


@TASKS
def test_after_the_function_before_its_result(tether_env, task):
    tether_env.crash_at("charge", when="after")
    run = tether_env.run(task, {"id": 2})
    assert run.status == RunStatus.EXECUTING and "charge" not in tether_env.steps(run)
    tether_env.advance("1m")
    assert tether_env.retrieve(run).status == RunStatus.COMPLETED
    assert CALLS == ["reserve", "charge", "charge", "ship"]  # at least once: charged twice


def test_a_once_step_is_not_called_again(tether_env):
    tether_env.crash_at("charge")
    run = tether_env.run(pay_once, {"id": 3})
    tether_env.advance("1m")
    failed = tether_env.retrieve(run)
    assert failed.status == RunStatus.FAILED and failed.error["type"] == "tether.errors.OnceInterrupted"
    assert CALLS == []


def test_a_crash_at_the_second_call_after_a_wait(tether_env):
    tether_env.crash_at("charge#2", when="after")
    run = tether_env.run(installments, {"id": 5})
    tether_env.advance("30d")
    assert tether_env.retrieve(run).status == RunStatus.EXECUTING
    tether_env.advance("1m")
    done = tether_env.retrieve(run)
    assert done.status == RunStatus.COMPLETED and done.output == ["charge-1-ok", "charge-2-ok"]
    assert CALLS == ["charge-1", "charge-2", "charge-2"]
    assert tether_env.steps(run)["charge"]["attempt"] == 1


def test_code_that_catches_the_crash_is_told(tether_env):
    tether_env.crash_at("charge")
    with pytest.raises(Exception, match="went on after crash_at stopped it at step 'charge' "
                                        ".the run is now COMPLETED.: the task's code caught"):
        tether_env.run(careless, {"id": 6})


def test_each_crash_costs_an_attempt(tether_env):
    tether_env.crash_at("ship", times=3)
    run = tether_env.run(checkout, {"id": 4})
    tether_env.advance("10m")
    failed = tether_env.retrieve(run)
    assert failed.status == RunStatus.FAILED and failed.attempts == 3
    assert CALLS == ["reserve", "charge"]
''')
    result.assert_outcomes(passed=8)


def test_override_step_stands_in_for_the_function(pytester: pytest.Pytester) -> None:
    result = kit(pytester, CHECKOUT, HEADER + '''

@TASKS
def test_every_time(tether_env, task):
    tether_env.override_step("charge", {"charge_id": "ch_test", "amount": 1250})
    first = tether_env.run(task, {"id": 1})
    second = tether_env.run(task, {"id": 2})
    for run in (first, second):
        assert run.status == RunStatus.COMPLETED
        assert run.output["charge"] == {"charge_id": "ch_test", "amount": 1250}
        assert tether_env.steps(run)["charge"]["result"] == {"charge_id": "ch_test",
                                                             "amount": 1250}
    assert CALLS == ["reserve", "ship", "reserve", "ship"]


def test_once_then_the_function(tether_env):
    tether_env.override_step("charge", "fake", times=1)
    assert tether_env.run(checkout, {"id": 3}).output["charge"] == "fake"
    assert tether_env.run(checkout, {"id": 4}).output["charge"] == "charge-ok"


def test_a_value_that_is_not_json_is_refused(tether_env):
    with pytest.raises(Exception, match="override_step"):
        tether_env.override_step("charge", {1, 2})
''')
    result.assert_outcomes(passed=4)
