-- An idle worker's offer: the next run triggered for it (a task it serves, in a queue it
-- serves that has no limit and is not paused, ready at once) is stored by the trigger already
-- claimed by this worker, leased under `token` until `lease_until`, and the worker is told with
-- the run's row in the message: no claim, no extra round trip. One offer per worker; the trigger
-- deletes the offer it takes. `lease_until` is the worker's clock when it made the offer plus its
-- lease, the same expiry a claim sent then would set; a trigger takes the offer only before
-- `usable_until` (a third of the lease after it was made), so the run's lease has most of its
-- length left when the worker hears of it, and the worker still checks it by its own clock.
CREATE TABLE run_offers (
    worker_id     text PRIMARY KEY,
    token         text NOT NULL,
    tasks         text[] NOT NULL,
    queues        text[],
    version       text,
    lease_until   double precision NOT NULL,
    usable_until  double precision NOT NULL
);
