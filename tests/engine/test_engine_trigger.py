"""Triggering from application code: payload checks, unknown tasks, idempotency, delays, order."""

from __future__ import annotations

from typing import Any

import pytest
from engine_helpers import drain, record
from pydantic import BaseModel

from tether import (
    BatchItem,
    ConfigurationError,
    ManualClock,
    PayloadError,
    Queue,
    Retry,
    RunStatus,
    Tether,
    UnknownTask,
    Worker,
)


class Order(BaseModel):
    id: int
    qty: int = 1


def test_output_that_is_not_json_fails_the_attempt_clearly(app: Tether) -> None:
    @app.task(retry=Retry(max_attempts=1))
    async def returns_object(payload: Any) -> Any:
        return {"when": object()}

    handle = returns_object.trigger(None)
    drain(Worker(app))
    run = app.runs.retrieve(handle.id)
    assert run.status == RunStatus.FAILED and run.output is None
    assert run.error is not None
    assert "the return value of task 'returns-object' cannot be stored as JSON" in run.error["message"]
    assert "object is not JSON serializable" in run.error["message"]
    assert run.error["type"] == "tether.errors.SerializationError"


def test_pydantic_payload_is_validated_and_parsed(app: Tether) -> None:
    received: list[Any] = []

    @app.task
    async def ship(order: Order) -> int:
        received.append(order)
        return order.id * order.qty

    handle = ship.trigger({"id": "7", "qty": 3})
    assert app.runs.retrieve(handle.id).payload == {"id": 7, "qty": 3}  # stored as validated JSON
    drain(Worker(app))
    assert received == [Order(id=7, qty=3)]
    assert app.runs.retrieve(handle.id).output == 21
    assert ship.trigger(Order(id=2)).retrieve().payload == {"id": 2, "qty": 1}


def test_invalid_pydantic_payload_stores_nothing(app: Tether) -> None:
    @app.task
    async def ship(order: Order) -> None: ...

    with pytest.raises(PayloadError, match=r"^payload for task 'ship' is invalid at id: Input "):
        ship.trigger({"id": "not a number"})
    with pytest.raises(PayloadError, match=r"is invalid at id: Field required$"):
        ship.batch_trigger([{"id": 1}, {"qty": 2}])  # one bad item: the whole batch is refused
    with pytest.raises(PayloadError):
        app.trigger("ship", {"id": []})
    assert app.runs.list() == []


class Line(BaseModel):
    name: str


class Signup(BaseModel):
    email: str
    age: int
    lines: list[Line] = []


@pytest.mark.parametrize(("payload", "message"), [
    ({"email": "a@b.c", "age": "old"}, "payload for task 'signup' is invalid at age: "),
    ({"age": 30}, "payload for task 'signup' is invalid at email: Field required"),
    ({"email": "a", "age": 1, "lines": [{"name": "x"}, {"name": "y"}, {"nom": "z"}]},
     "payload for task 'signup' is invalid at lines[2].name: Field required"),
    ({"age": "old"}, "payload for task 'signup' is invalid at email: Field required (and 1 more "
                     "problem)"),
    ([], "payload for task 'signup' is invalid: "),
])
def test_an_invalid_payload_reads_the_same_with_or_without_the_code(
        app: Tether, payload: Any, message: str) -> None:
    """The task's model (its code loaded) and the registry's JSON schema (`tether serve`, the
    CLI, `app.trigger` by id elsewhere) word an invalid payload alike: where, then why."""
    @app.task
    async def signup(payload: Signup) -> None: ...

    app.storage.register_tasks([signup.record(app.clock.now())], [signup.queue_record()])
    elsewhere = Tether(app.database_url)  # the task's code not loaded: its JSON schema decides
    try:
        for trigger in (signup.trigger, lambda p: app.trigger("signup", p),
                        lambda p: elsewhere.trigger("signup", p)):
            with pytest.raises(PayloadError) as caught:
                trigger(payload)
            assert str(caught.value).startswith(message), str(caught.value)
            if message.endswith(": "):  # the validators' own words follow
                assert len(str(caught.value)) > len(message)
            else:
                assert str(caught.value) == message
    finally:
        elsewhere.close()
    assert app.runs.list() == []


def test_payload_that_is_not_json_is_refused(app: Tether) -> None:
    @app.task
    async def anything(payload: Any) -> None: ...

    with pytest.raises(PayloadError, match="payload cannot be stored as JSON: set is not"):
        anything.trigger({"x": {1, 2}})
    with pytest.raises(PayloadError, match="JSON"):
        anything.trigger(float("nan"))
    assert app.runs.list() == []


def test_unknown_task_lists_known_tasks(app: Tether) -> None:
    @app.task
    async def send_email(payload: Any) -> None: ...

    @app.task(id="resize")
    async def resize_image(payload: Any) -> None: ...

    with pytest.raises(UnknownTask) as info:
        app.trigger("send_emial", {})
    assert info.value.task_id == "send_emial"
    assert info.value.known == ["resize", "send-email"]
    assert "unknown task 'send_emial'; known tasks: resize, send-email" in str(info.value)
    assert app.runs.list() == []


def test_trigger_by_id(app: Tether) -> None:
    @app.task
    async def echo(payload: Any) -> Any:
        return payload

    handle = app.trigger("echo", {"a": 1}, tags="t1")
    drain(Worker(app))
    run = app.runs.retrieve(handle.id)
    assert (run.task_id, run.output, run.tags) == ("echo", {"a": 1}, ["t1"])


def test_unknown_trigger_option_is_refused(app: Tether) -> None:
    @app.task
    async def echo(payload: Any) -> None: ...

    with pytest.raises(ConfigurationError, match="unknown trigger option"):
        echo.trigger(None, idempotencyKey="k")
    assert app.runs.list() == []


def test_idempotency_key_returns_the_first_run(app: Tether, clock: ManualClock) -> None:
    @app.task
    async def charge(payload: Any) -> Any:
        return payload

    first = charge.trigger({"n": 1}, idempotency_key="order-1", idempotency_key_ttl="1h")
    drain(Worker(app))
    again = charge.trigger({"n": 2}, idempotency_key="order-1")
    assert again.id == first.id and again.is_cached and not first.is_cached
    assert again.retrieve().status == RunStatus.COMPLETED  # whatever its status
    clock.advance(3600)
    fresh = charge.trigger({"n": 3}, idempotency_key="order-1")
    assert fresh.id != first.id and not fresh.is_cached
    assert len(app.runs.list()) == 2


def test_a_key_whose_run_failed_makes_a_new_run(app: Tether, clock: ManualClock) -> None:
    """Trigger.dev's rule, as over HTTP: a key whose run ended FAILED, TIMED_OUT or EXPIRED is
    free again; CANCELED and COMPLETED runs keep theirs."""
    @app.task(retry=Retry(max_attempts=1))
    async def charge(payload: Any) -> Any:
        if payload.get("fail"):
            raise ValueError("card declined")
        return payload

    first = charge.trigger({"fail": True}, idempotency_key="order-9")
    drain(Worker(app))
    assert first.retrieve().status == RunStatus.FAILED
    retried = charge.trigger({"fail": False}, idempotency_key="order-9")
    assert retried.id != first.id and not retried.is_cached
    assert app.trigger("charge", {}, idempotency_key="order-9").id == retried.id  # by id too
    drain(Worker(app))
    assert retried.retrieve().status == RunStatus.COMPLETED
    assert charge.trigger({}, idempotency_key="order-9").id == retried.id

    expiring = charge.trigger({}, idempotency_key="late", ttl="1m")
    clock.advance(61)
    assert app.storage.expire_runs(clock.now()) == [expiring.id]  # what housekeeping does
    assert expiring.retrieve().status == RunStatus.EXPIRED
    assert charge.trigger({}, idempotency_key="late").id != expiring.id

    canceled = charge.trigger({}, idempotency_key="kept", delay="1h")
    app.runs.cancel(canceled.id)
    [again] = charge.batch_trigger([BatchItem({}, idempotency_key="kept")])
    assert again.id == canceled.id and again.is_cached


def test_delay_waits_for_the_clock(app: Tether, clock: ManualClock) -> None:
    @app.task
    async def later(payload: Any) -> str:
        return "done"

    handle = later.trigger(None, delay="1m")
    assert handle.status() == RunStatus.DELAYED
    worker = Worker(app)
    clock.advance(59.5)
    assert drain(worker) == 0
    clock.advance(0.5)
    assert drain(worker) == 1
    assert handle.status() == RunStatus.COMPLETED


def test_ttl_passed_run_never_starts(app: Tether, clock: ManualClock) -> None:
    @app.task
    async def fresh_only(payload: Any) -> None: ...

    handle = fresh_only.trigger(None, ttl=10)
    clock.advance(10)
    assert drain(Worker(app)) == 0
    assert app.storage.expire_runs(clock.now()) == [handle.id]
    assert handle.status() == RunStatus.EXPIRED


def test_batch_trigger_with_per_item_options(app: Tether) -> None:
    @app.task
    async def echo(payload: Any) -> Any:
        return payload

    handles = echo.batch_trigger([1, BatchItem(2, tags=["special"]), 3], tags=["batch"])
    assert [h.retrieve().payload for h in handles] == [1, 2, 3]
    assert [h.retrieve().tags for h in handles] == [["batch"], ["special"], ["batch"]]
    assert drain(Worker(app)) == 3
    assert [h.retrieve().output for h in handles] == [1, 2, 3]


def test_priority_orders_execution(app: Tether) -> None:
    order: list[str] = []

    @app.task(queue=Queue("serial", concurrency=1))
    async def job(payload: str) -> None:
        order.append(payload)

    job.trigger("low")
    job.trigger("high", priority=10)
    job.trigger("mid", priority=5)
    drain(Worker(app, concurrency=1))
    assert order == ["high", "mid", "low"]


def test_queue_concurrency_limit_is_respected_by_the_worker(app: Tether) -> None:
    running: list[int] = []
    peak: list[int] = []

    @app.task(queue=Queue("narrow", concurrency=2))
    async def job(payload: int) -> None:
        import asyncio

        running.append(payload)
        peak.append(len(running))
        await asyncio.sleep(0.01)
        running.remove(payload)

    job.batch_trigger(list(range(6)))
    assert drain(Worker(app, concurrency=10)) == 6
    assert max(peak) == 2
    assert {r.status for r in app.runs.list()} == {RunStatus.COMPLETED}
    assert record(app, app.runs.list()[0].id).attempts == 1
