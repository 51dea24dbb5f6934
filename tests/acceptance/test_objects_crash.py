"""A process SIGKILLed between writing an object and the row that names it: no row names a
missing object, the run goes on on another worker, and the sweep removes the orphan (both
backends; a step's result written by a worker, and a trigger's payload)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from acceptance_support import Workers, make_env, wait_for_status, wait_until

from tether import RunStatus, Tether
from tether.objects.references import object_keys
from tether.objects.stores import FileStore
from tether.objects.sweep import sweep

pytestmark = pytest.mark.slow

BIG = 2 * 1024 * 1024


def named_objects(client: Tether) -> set[str]:
    """Every object key a run or step row names."""
    ids = [r.id for r in client.runs.list(limit=1000)]
    texts: list[str | None] = []
    for record in client.storage.get_runs(ids):
        texts += [record.payload, record.output, record.metadata, record.state]
    for steps in client.storage.load_steps_many(ids).values():
        texts += [s.output for s in steps.values()]
    return {k for keys in object_keys(texts).values() for k in keys}


@pytest.fixture
def objects_dir(tmp_path: Path) -> Path:
    return tmp_path / "objects"


@pytest.fixture
def crash_env(db_url: str, objects_dir: Path, tmp_path: Path) -> dict[str, str]:
    env = make_env(db_url)
    env["OBJECT_DIR"] = str(objects_dir)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")]))
    return env


def test_a_worker_killed_between_a_step_object_and_its_row(
    db_url: str, tmp_path: Path, objects_dir: Path, crash_env: dict[str, str],
    app_file: object,
) -> None:
    app = app_file("objects_crash_app.py")  # type: ignore[operator]
    marker = tmp_path / "written"
    store = FileStore(objects_dir)
    client = Tether(db_url, object_store=store)
    workers = Workers(tmp_path, dict(crash_env, CRASH_MARKER=str(marker)))
    try:
        crashing = workers.start(app)
        run_id = client.trigger("big", "ab").id
        wait_until(marker.exists, 30, lambda: "no object written\n" + workers.describe())
        orphan = marker.read_text()
        crashing.kill()  # SIGKILL: the object is in the store, its step row is not
        assert orphan in set(store.keys())
        named = named_objects(client)
        assert orphan not in named
        assert named <= set(store.keys()), "a row names a missing object"

        workers.env = crash_env  # no marker: the next worker writes and stores its row
        workers.start(app)
        done = wait_for_status(client, run_id, RunStatus.COMPLETED, timeout=30)
        assert done.output == BIG
        kept = named_objects(client)
        assert kept and kept <= set(store.keys())

        removed = sweep(store, client.storage, time.time(), older_than=0.0)
        assert removed == [orphan]
        assert orphan not in set(store.keys())
        assert client.runs.retrieve(run_id).output == BIG  # (the step's object is still there)
    finally:
        workers.close()
        client.close()


TRIGGER = """
import objects_crash_app as m
m.app.trigger("big", "x" * {size})
"""


def test_a_process_killed_between_a_payload_object_and_its_run(
    db_url: str, tmp_path: Path, objects_dir: Path, crash_env: dict[str, str],
    app_file: object,
) -> None:
    app_file("objects_crash_app.py")  # type: ignore[operator]
    marker = tmp_path / "written"
    store = FileStore(objects_dir)
    client = Tether(db_url, object_store=store)
    try:
        out = (tmp_path / "trigger.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-c", TRIGGER.format(size=BIG)], cwd=tmp_path,
                                env=dict(crash_env, CRASH_MARKER=str(marker)),
                                stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: marker.exists() or proc.poll() is not None, 30,
                       "the trigger wrote no object")
            assert proc.poll() is None, (tmp_path / "trigger.log").read_text()[-3000:]
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(timeout=10)
            out.close()
        orphan = marker.read_text()
        assert list(store.keys()) == [orphan]
        assert client.runs.list(limit=10) == []  # nothing stored: no row names it
        assert sweep(store, client.storage, time.time(), older_than=0.0) == [orphan]
        assert list(store.keys()) == []
    finally:
        client.close()
