"""The worker loop's wake-up: a timed wait without a task, one timer for many waits."""

from __future__ import annotations

import asyncio
import time

from tether.worker.wake import Wake


def test_a_set_wake_returns_at_once_and_clear_resets_it() -> None:
    async def main() -> None:
        wake = Wake()
        wake.set()
        assert wake.is_set() and await wake.wait(10.0)
        wake.clear()
        assert not wake.is_set()
        assert not await wake.wait(0.01)

    asyncio.run(main())


def test_set_wakes_a_waiter_before_its_timeout() -> None:
    async def main() -> None:
        wake = Wake()
        loop = asyncio.get_running_loop()
        loop.call_later(0.02, wake.set)
        start = time.monotonic()
        assert await wake.wait(5.0)
        assert time.monotonic() - start < 1.0

    asyncio.run(main())


def test_the_timeout_counts_from_the_latest_wait_and_one_timer_serves_many() -> None:
    async def main() -> None:
        wake = Wake()
        loop = asyncio.get_running_loop()
        for _ in range(20):  # woken long before each timeout: the first timer stays armed
            loop.call_later(0.001, wake.set)
            assert await wake.wait(0.2)
            wake.clear()
        timers = len(loop._scheduled)  # type: ignore[attr-defined]
        assert timers <= 1
        start = time.monotonic()
        assert not await wake.wait(0.1)  # the first timer fires early: armed again, not done
        waited = time.monotonic() - start
        assert 0.09 <= waited < 0.5
        wake.close()

    asyncio.run(main())


def test_an_untimed_wait_outlives_an_earlier_timer() -> None:
    async def main() -> None:
        wake = Wake()
        wake.set()
        assert await wake.wait(0.01)
        wake.clear()
        asyncio.get_running_loop().call_later(0.001, wake.set)
        assert await wake.wait(0.02)  # its timer is left armed, to fire during the next wait
        wake.clear()
        waiter = asyncio.ensure_future(wake.wait())
        await asyncio.sleep(0.05)
        assert not waiter.done()
        wake.set()
        assert await waiter

    asyncio.run(main())


def test_a_cancelled_wait_leaves_the_wake_usable() -> None:
    async def main() -> None:
        wake = Wake()
        waiter = asyncio.ensure_future(wake.wait(5.0))
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        asyncio.get_running_loop().call_later(0.01, wake.set)
        assert await wake.wait(5.0)

    asyncio.run(main())
