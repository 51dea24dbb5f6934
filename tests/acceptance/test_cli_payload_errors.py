"""`tether trigger` with an invalid payload prints the message Python and the HTTP API give:
`Error: payload for task 'signup' is invalid at age: ...`, one line, nothing stored. The CLI does
not import the app: it validates with the JSON schema a worker registered."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from acceptance_support import assert_clean_error, bus_folder, make_env, run_cli
from pydantic import BaseModel

from tether import PayloadError, Tether

pytestmark = pytest.mark.slow


class Line(BaseModel):
    name: str


class Signup(BaseModel):
    email: str
    age: int
    lines: list[Line] = []


@pytest.fixture
def registered(tmp_path: Path) -> Iterator[Tether]:
    """A database where a worker registered `signup` (its payload's JSON schema)."""
    db = tmp_path / "tether.db"
    app = Tether(f"sqlite:///{db}")

    @app.task(id="signup")
    async def signup(payload: Signup) -> None: ...

    app.storage.migrate()
    app.storage.register_tasks([signup.record(app.clock.now())], [signup.queue_record()])
    try:
        yield app
    finally:
        app.close()
        shutil.rmtree(bus_folder(db), ignore_errors=True)


@pytest.mark.parametrize(("payload", "expected"), [
    ('{"email": "a@b.c", "age": "old"}', "payload for task 'signup' is invalid at age: "),
    ('{"age": 30}', "payload for task 'signup' is invalid at email: Field required"),
    ('{"email": "a", "age": 1, "lines": [{"name": "x"}, {"name": "y"}, {}]}',
     "payload for task 'signup' is invalid at lines[2].name: Field required"),
])
def test_an_invalid_payload_is_one_line_in_pythons_words(
        registered: Tether, tmp_path: Path, payload: str, expected: str) -> None:
    result = run_cli("trigger", "signup", payload, env=make_env(tmp_path / "tether.db"),
                     cwd=tmp_path)
    line = assert_clean_error(result)
    assert line.startswith(f"Error: {expected}"), line
    if not expected.endswith(": "):  # the same words as the model gives in Python
        with pytest.raises(PayloadError) as in_python:
            registered.tasks["signup"].trigger(json.loads(payload))
        assert line == f"Error: {in_python.value}"
    assert registered.runs.list() == []
