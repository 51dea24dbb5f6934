"""Offers of idle workers in PostgreSQL (a part of PostgresStorage; storage/offers.py): a
trigger takes one in its own statement (add_run_offer), and the worker's side is here.

Looking for an offer costs every trigger's statement about 20 µs of the server's time, wasted
while workers are busy (they make offers only with nothing to run). So a producer looks while
its triggers take offers, and otherwise only once every PROBE seconds: a burst of triggers
looks once, and a trigger after a quiet moment, when workers wait, looks at once."""

from __future__ import annotations

import threading
import time
from typing import Any

from tether.storage.offers import Offer
from tether.storage.postgres.access import PgAccess, Q
from tether.storage.postgres.arrays import array_literal
from tether.storage.records import RunRecord

PROBE = 0.1  # seconds between looks while no trigger took an offer
KEEP = 1.0  # seconds of looking on after a trigger took one


def offer_params(offer: Offer, token_key: str = "token") -> dict[str, Any]:
    return {"worker": offer.worker_id, token_key: offer.token,
            "tasks": array_literal(offer.tasks),
            "queues": None if offer.queues is None else array_literal(offer.queues),
            "version": offer.version, "lease_until": offer.lease_until,
            "usable_until": offer.usable_until}


# finish_one with the offer in its transaction: one statement, as a lone ending is
_ANCHOR = "),done AS ("
assert _ANCHOR in Q["finish_one"]
FINISH_ONE_OFFER = Q["finish_one"].replace(_ANCHOR, f"),{Q['offer_cte']},done AS (", 1)


class OfferWatch:
    """Which statement a single trigger uses: add_run_offer while offers are being taken."""

    def __init__(self) -> None:
        self._taken_at = -KEEP
        self._look_at = 0.0
        self._lock = threading.Lock()

    def statement(self, ready: bool) -> str:
        now = time.monotonic()
        with self._lock:
            if ready and (now - self._taken_at < KEEP or now >= self._look_at):
                self._look_at = now + PROBE
                return Q["add_run_offer"]
        return Q["add_run_gated"]

    def seen(self, took: bool) -> None:
        if took:
            self._taken_at = time.monotonic()


class OfferParts(PgAccess):
    offers = True  # a trigger takes a worker's offer in its statement

    def make_offer(self, offer: Offer, previous: list[str] | None = None) -> list[RunRecord]:
        params = {**offer_params(offer), "now": offer.now,
                  "previous": array_literal(previous or [])}
        rows = self._run(lambda conn: conn.execute(Q["make_offer"], params).fetchall(), True)
        return [RunRecord.from_mapping(row) for row in rows]

    def withdraw_offer(self, worker_id: str, tokens: list[str]) -> list[RunRecord]:
        """Drop the worker's offer, whatever its token; the runs that took its offers `tokens`
        (normally none), read after the delete, so that a trigger that held the offer has
        committed by then."""
        self._run(lambda conn: conn.execute(Q["withdraw_offer"], (worker_id,)))
        rows = self._all(Q["offer_taken_by"], {"tokens": array_literal(tokens),
                                                "worker": worker_id})
        return [RunRecord.from_mapping(row) for row in rows]
