"""The worker's event loop (worker/timers.py): epoll readiness with microsecond timeouts."""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import threading
import time

import pytest

from tether.worker.timers import FD_SETSIZE, new_event_loop


def test_a_timer_never_fires_before_its_time() -> None:
    loop = new_event_loop()
    try:
        async def sleep_once(seconds: float) -> float:
            start = time.monotonic()
            await asyncio.sleep(seconds)
            return time.monotonic() - start

        for seconds in (0.0003, 0.0025, 0.0051):
            assert loop.run_until_complete(sleep_once(seconds)) >= seconds
    finally:
        loop.close()


def test_a_ready_socket_wakes_the_loop_before_a_pending_timer() -> None:
    loop = new_event_loop()
    left, right = socket.socketpair()
    try:
        got = loop.create_future()
        loop.add_reader(left.fileno(), lambda: got.set_result(left.recv(16)))
        loop.call_later(30, lambda: None)  # the loop's timeout while it waits: 30 s
        threading.Timer(0.05, right.send, (b"ping",)).start()
        start = time.monotonic()
        assert loop.run_until_complete(asyncio.wait_for(got, 10)) == b"ping"
        assert time.monotonic() - start < 10
    finally:
        loop.close()
        left.close()
        right.close()


def test_descriptors_above_select_limit_are_served() -> None:
    """select() alone cannot watch a descriptor >= FD_SETSIZE; the loop still can."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    high = FD_SETSIZE + 100
    if max(soft, hard) <= high:
        pytest.skip(f"this process may not open descriptor {high} (RLIMIT_NOFILE {soft}/{hard})")
    if soft <= high:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    left, right = socket.socketpair()
    os.dup2(left.fileno(), high)
    left.close()
    loop = new_event_loop()
    try:
        got = loop.create_future()
        loop.add_reader(high, lambda: got.set_result(os.read(high, 16)))
        loop.call_later(0.01, right.send, b"late")
        assert loop.run_until_complete(asyncio.wait_for(got, 10)) == b"late"
    finally:
        loop.close()
        os.close(high)
        right.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
