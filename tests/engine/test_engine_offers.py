"""PostgreSQL, in process: a run that took a worker's offer while every place of that worker
was taken (an offer made before they filled, taken as it was being renewed) is handed back to
its queue uncounted, not run over the worker's concurrency."""

from __future__ import annotations

import asyncio
from typing import Any

from tether import Tether
from tether.worker.worker import Worker


def test_a_run_that_took_an_offer_of_a_full_worker_goes_back_uncounted(pg_url: str) -> None:
    app = Tether(pg_url)

    @app.task(id="echo")
    async def echo(value: Any) -> Any:
        return value

    async def scenario() -> None:
        worker = Worker(app, concurrency=2)
        offer = worker._next_offer()
        app.storage.make_offer(offer)
        handle = echo.trigger(1)  # takes the offer
        record = app.storage.get_run(handle.id)
        assert record is not None and record.status == "EXECUTING"
        assert record.lease_token == offer.token
        worker.concurrency = 0  # (as full as two runs in two places: nothing else set up)
        worker._start_taken(record)
        assert handle.id not in worker.running
        await asyncio.wait_for(asyncio.gather(*worker._handing_back), 10)
        back = app.storage.get_run(handle.id)
        assert back is not None and (back.status, back.attempts) == ("QUEUED", 0)
        assert back.lease_token is None

    try:
        asyncio.run(scenario())
    finally:
        app.close()
