"""`tether trigger --idempotency-key` follows the rule Python and the HTTP API follow (Trigger.dev's):
a key whose run failed makes a new run; a live one prints the existing run."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from acceptance_support import bus_folder, make_env, run_cli

from tether import Retry, RunStatus, Tether, Worker

pytestmark = pytest.mark.slow
CACHED = "(existing run: idempotency key matched)"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Tether]:
    """`charge` registered in a fresh database; this process runs it (it fails when asked)."""
    db = tmp_path / "tether.db"
    app = Tether(f"sqlite:///{db}")

    @app.task(id="charge", retry=Retry(max_attempts=1))
    async def charge(payload: Any) -> Any:
        if payload.get("fail"):
            raise ValueError("card declined")
        return payload

    app.storage.migrate()
    app.storage.register_tasks([charge.record(app.clock.now())], [charge.queue_record()])
    try:
        yield app
    finally:
        app.close()
        shutil.rmtree(bus_folder(db), ignore_errors=True)


def test_a_failed_runs_key_makes_a_new_run_from_the_cli(app: Tether, tmp_path: Path) -> None:
    env = make_env(tmp_path / "tether.db")

    def trigger(payload: str) -> str:
        result = run_cli("trigger", "charge", payload, "--idempotency-key", "order-9", env=env,
                         cwd=tmp_path)
        assert result.returncode == 0, result
        return result.stdout.strip()

    first = trigger('{"fail": true}')
    assert first.startswith("run_") and CACHED not in first
    asyncio.run(Worker(app).run_until_idle())
    assert app.runs.retrieve(first).status == RunStatus.FAILED
    second = trigger('{"fail": false}')
    assert second.startswith("run_") and second != first and CACHED not in second
    assert trigger("{}") == f"{second}  {CACHED}"
    assert app.trigger("charge", {}, idempotency_key="order-9").id == second  # Python agrees
