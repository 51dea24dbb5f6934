"""Objects no row names: removed by the workers' housekeeping, and deleted with their rows.

An object is written before the row that names it, so a process killed in between (or a row
that was never stored: a trigger refused after its payload was written, a value replaced soon
after) leaves an object no row names. The sweep looks at each object once, when it is an hour
old: keys are time-ordered, and a cursor per store (a setting) remembers how far it got. Each
key names its owner (the run or token whose row should name it), so the check is a read of
that row and its steps by primary key, never a scan. Objects without an owner (API payload
packets) are kept. A sweep runs at most every SWEEP_INTERVAL per database (a setting records the
last one), on a thread of its own, so the housekeeping's lease renewals never wait for it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from tether.clock import id_seconds
from tether.objects.references import Objects, key_owner, object_keys
from tether.objects.stores import ObjectStore
from tether.storage.base import Storage

log = logging.getLogger("tether.objects")

ORPHAN_AGE = 3600.0  # an object no row names after this long is an orphan
SWEEP_INTERVAL = 600.0  # seconds between sweeps of one store, across workers
BATCH = 500  # objects checked per sweep


def _named(storage: Storage, keys: list[str]) -> set[str]:
    """Which of `keys` a row names (their owner's run row and steps, or token row)."""
    owners = {key_owner(k)[1] for k in keys}
    runs = [o for o in owners if o.startswith("run_")]
    texts: list[str | None] = []
    for record in storage.get_runs(runs):
        texts += [record.payload, record.output, record.metadata, record.state]
    for steps in storage.load_steps_many(runs).values():
        texts += [s.output for s in steps.values()]
    for owner in owners:
        if owner.startswith("waitpoint_"):
            token = storage.get_token(owner)
            texts.append(token.output if token is not None else None)
    return {k for found in object_keys(texts).values() for k in found}


def sweep(store: ObjectStore, storage: Storage, now: float, older_than: float = ORPHAN_AGE,
          batch: int = BATCH) -> list[str]:
    """Delete the objects of `store` older than `older_than` that no row names, from the cursor
    on (at most `batch` of them looked at); the keys deleted."""
    setting = f"objects.cursor {store.location}"
    cursor = storage.get_setting(setting) or ""
    candidates: list[str] = []
    for key in store.keys(after=cursor):
        made = id_seconds(key_owner(key)[0])
        if made is None:
            continue  # not an object Tether wrote
        if made > now - older_than:
            break  # keys are in time order: the rest are younger
        candidates.append(key)
        if len(candidates) >= batch:
            break
    if not candidates:
        return []
    owned = [k for k in candidates if key_owner(k)[1]]
    named = _named(storage, owned) if owned else set()
    orphans = [k for k in owned if k not in named]
    if orphans:
        store.delete(orphans)
        log.info("removed %d object(s) no row names from %s", len(orphans), store.location)
    storage.put_setting(setting, candidates[-1])
    return orphans


def delete_objects(texts: Iterable[str | None], objects: Objects) -> int:
    """Delete the objects the stored `texts` name (values of rows being deleted); how many.
    Call it after the rows' deletion committed: a crash in between leaves objects the sweep
    does not see again (it looked at them already), but never a row naming a missing object."""
    found = object_keys(texts)
    from tether.objects.stores import registered

    count = 0
    for location, keys in found.items():
        registered(location).delete(keys)
        count += len(keys)
    return count


def drop_replaced(text: str) -> None:
    """Delete the object of a value its row no longer names (a checkpoint replaced by a newer
    one), after the commit that replaced it; a store that fails leaves the object behind
    (logged): an old object's leak, never a row naming a missing object."""
    try:
        for location, keys in object_keys([text]).items():
            from tether.objects.stores import registered

            registered(location).delete(keys)
    except Exception as exc:
        log.warning("could not delete a replaced object (%s): %s", text[:120], exc)


class Sweeper:
    """The housekeeping's hook: `maybe(now)` starts a sweep on a thread of its own when one is
    due (every SWEEP_INTERVAL per database, with the last start kept in a setting) and none is
    running in this process."""

    def __init__(self, objects: Objects, storage: Storage) -> None:
        self.objects = objects
        self.storage = storage
        self._thread: threading.Thread | None = None
        self._next = 0.0  # time.monotonic() of the next look at the setting

    def maybe(self, now: float) -> None:
        store = self.objects.store
        if store is None or time.monotonic() < self._next:
            return
        self._next = time.monotonic() + 60.0
        if self._thread is not None and self._thread.is_alive():
            return
        setting = f"objects.swept {store.location}"
        last = self.storage.get_setting(setting)
        if last is not None and float(last) > now - SWEEP_INTERVAL:
            return
        self.storage.put_setting(setting, repr(now))
        self._thread = threading.Thread(target=self._run, args=(store, now), daemon=True,
                                        name="tether-object-sweep")
        self._thread.start()

    def _run(self, store: ObjectStore, now: float) -> None:
        try:
            sweep(store, self.storage, now)
        except Exception as exc:
            log.warning("object sweep of %s failed: %s", store.location, exc)
