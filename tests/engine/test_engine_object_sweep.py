"""Crash safety of large values: an object is written before the row that names it, so a
SIGKILL between the two leaves an object no row names, never a row naming a missing object;
the sweep removes such orphans once they are an hour old and keeps every object a row names."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from engine_helpers import drain

from tether import Context, ManualClock, Tether, Worker
from tether.objects import FileStore, is_reference
from tether.objects.references import full_text
from tether.objects.sweep import delete_objects, sweep

BIG = 1_000_000
SRC = str(Path(__file__).resolve().parents[2] / "src")

# a process that triggers a large payload with a store that SIGKILLs the process right after
# writing the object, before the run's row is stored
KILLED_TRIGGER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from tether import Tether
    from tether.objects import FileStore

    class KilledAfterPut(FileStore):
        def put(self, key, data):
            super().put(key, data)
            os.kill(os.getpid(), signal.SIGKILL)

    app = Tether(sys.argv[1], object_store=KilledAfterPut(Path(sys.argv[2])))

    @app.task(id="heavy")
    async def heavy(payload):
        return None

    heavy.trigger({"blob": "k" * 1_000_000})
    print("not killed")
""")


def every_reference_resolves(app: Tether) -> None:
    for run in app.runs.list(limit=1000):
        record = app.storage.get_run(run.id)
        assert record is not None
        for text in (record.payload, record.output, record.metadata, record.state):
            if is_reference(text):
                assert full_text(text)  # raises if the object is missing


def test_sigkill_between_object_and_row_leaves_an_orphan_the_sweep_removes(
        db_url: str, tmp_path: Path, clock: ManualClock) -> None:
    objects = tmp_path / "objects"
    app = Tether(db_url, clock=clock, object_store=objects.as_uri())
    try:
        app.storage.migrate()
        done = subprocess.run([sys.executable, "-c", KILLED_TRIGGER, db_url, str(objects)],
                              env={**os.environ, "PYTHONPATH": SRC}, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == -signal.SIGKILL, done.stderr
        store = FileStore(objects)
        orphans = list(store.keys())
        assert len(orphans) == 1  # the object was written ...
        assert app.runs.list(limit=10) == []  # ... and no row names it
        every_reference_resolves(app)
        now = time.time()
        assert sweep(store, app.storage, now) == []  # younger than an hour: kept
        assert sweep(store, app.storage, now + 3601) == orphans
        assert list(store.keys()) == []
    finally:
        app.close()


def test_the_sweep_keeps_every_object_a_row_names(db_url: str, tmp_path: Path,
                                                   clock: ManualClock) -> None:
    objects = tmp_path / "objects"
    app = Tether(db_url, clock=clock, object_store=objects.as_uri())
    try:
        @app.task
        async def heavy(payload: Any, ctx: Context) -> Any:
            await ctx.step("s", lambda: {"b": "s" * BIG})
            return {"b": "o" * BIG}

        handle = heavy.trigger({"b": "p" * BIG})
        token = app.tokens.create(timeout="1h")
        app.tokens.complete(token.id, {"b": "t" * BIG})
        drain(Worker(app))
        store = FileStore(objects)
        named = sorted(store.keys())
        assert len(named) == 4  # payload, step result, output, token data
        store.put(named[0].split(".")[0] + ".run_nothere", b"{}")  # an orphan of no run
        assert len(sweep(store, app.storage, time.time() + 3601)) == 1
        assert sorted(store.keys()) == named
        assert app.runs.retrieve(handle.id).output == {"b": "o" * BIG}
        every_reference_resolves(app)
        record = app.storage.get_run(handle.id)
        assert record is not None
        # deleting with the rows: the objects their values name
        assert delete_objects([record.payload, record.output], app.objects) == 2
        assert len(list(store.keys())) == 2
    finally:
        app.close()
