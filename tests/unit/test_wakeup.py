"""Wake-ups over Unix datagram sockets (tether/wakeup.py): every message reaches every listener
of its group, except a hint ("runs", "slot") to a listener that has not read the last one yet —
it will read that one and then look at the database anyway."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tether.wakeup import DATAGRAM, WAITERS, WORKERS, SocketBus, packed


@pytest.fixture
def bus() -> Iterator[SocketBus]:
    bus = SocketBus(f"test-wakeup-{uuid.uuid4()}")
    yield bus
    bus.close()


def test_a_hint_is_sent_again_only_once_the_last_one_was_read(bus: SocketBus) -> None:
    first, second = bus.listen(WORKERS), bus.listen(WORKERS)
    try:
        for _ in range(5):
            bus.publish(WORKERS, "runs")
        bus.publish(WORKERS, "slot")
        assert first.drain() == ["runs"]  # one unread hint stands for all of them
        bus.publish(WORKERS, "runs")  # read: this one is sent
        assert first.drain() == ["runs"]
        assert second.drain() == ["runs"]  # (the second listener never read in between)
    finally:
        first.close()
        second.close()


def test_other_messages_are_all_sent(bus: SocketBus) -> None:
    worker, waiter = bus.listen(WORKERS), bus.listen(WAITERS)
    try:
        bus.publish(WORKERS, "runs")
        bus.publish(WORKERS, "cancel run_1")
        bus.publish(WORKERS, "cancel run_2")
        bus.publish(WAITERS, "done run_1")
        bus.publish(WAITERS, "done run_1")
        assert worker.drain() == ["runs", "cancel run_1", "cancel run_2"]
        assert waiter.drain() == ["done run_1", "done run_1"]
    finally:
        worker.close()
        waiter.close()


def test_a_listener_that_went_away_is_forgotten(bus: SocketBus) -> None:
    gone = bus.listen(WORKERS)
    bus.publish(WORKERS, "runs")
    gone.close()
    later = bus.listen(WORKERS)
    try:
        bus.publish(WORKERS, "runs")
        assert later.drain() == ["runs"]
        assert list(bus._hinters) == [str(later.path)]  # type: ignore[attr-defined]
    finally:
        later.close()



def test_many_messages_travel_packed_and_arrive_one_by_one(bus: SocketBus) -> None:
    waiter = bus.listen(WAITERS)
    try:
        messages = [f"done run_{i:05d}" for i in range(1000)]  # about 16 KB: several datagrams
        datagrams = packed(messages)
        assert 1 < len(datagrams) < len(messages)
        assert all(len(d.encode()) <= DATAGRAM for d in datagrams)
        for datagram in datagrams:
            bus.publish(WAITERS, datagram)
        assert waiter.drain() == messages
        bus.publish(WAITERS, packed(["done run_a", "done run_b"])[0])
        assert waiter.wait(1.0) == ["done run_a", "done run_b"]
    finally:
        waiter.close()
