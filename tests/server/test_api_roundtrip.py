"""Property: every JSON value either reads back equal through every channel or is refused at
trigger time, whichever way it comes in. Hypothesis generates values (deep, wide, unicode edge
cases with NUL, lone surrogates and astral characters, large and tiny numbers); each is triggered
over HTTP and through the Python API, on both backends. An accepted value reads back equal, as
payload and as the output of a task that returns it, through `app.runs.retrieve`, the API's run
object, the runs list and the dashboard's run page (200), and at the end through the CLI's
`runs list --json` and, for a sample, `runs show --json`. A refused one is a 400 over HTTP and a
PayloadError in Python, with nothing stored."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tether import PayloadError, Tether, Worker

if TYPE_CHECKING:
    from conftest import LiveServer  # tests/server/conftest.py

DEPTH = 100  # Tether's documented MAX_JSON_DEPTH
TETHER_EXE = Path(sys.executable).with_name("tether")
CLI_SHOWN = 3  # accepted runs read back one by one with `tether runs show --json`

EDGE_TEXT = st.text(alphabet=st.sampled_from(
    ['\x00', '"', '\\', '[', ']', '{', '}', '\u2028', '\ufeff', '\U0001F600', '\U0010FFFF', 'é',
     '<', '&', '\x7f']), max_size=6)
# surrogates: lone ones, and two that JSON text turns into one character ("\ud83d\ude00")
SURROGATES = st.sampled_from(["\ud800", "a\udfff", "\ud83d\ude00", "\udc00\ud800"]) | st.text(
    st.characters(categories=["Cs"]), min_size=1, max_size=2)
TEXT = st.integers(0, 29).flatmap(
    lambda n: SURROGATES if n == 0 else EDGE_TEXT if n < 10 else st.text(max_size=12))
NUMBERS = st.one_of(
    st.integers(), st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from([2**53, 2**53 + 1, -(2**63), 2**64 + 1, 10**400]),
    st.floats(allow_nan=False, allow_infinity=False))
LEAVES = st.none() | st.booleans() | NUMBERS | TEXT


def _nest(value: Any, depth: int) -> Any:
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


PLAIN = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=5)
                     | st.dictionaries(TEXT, inner, max_size=5), max_leaves=25)
DEEP = st.builds(_nest, PLAIN, st.integers(DEPTH - 20, DEPTH + 10))
WIDE = st.lists(LEAVES, min_size=50, max_size=400) | st.dictionaries(st.text(max_size=8), LEAVES,
                                                                      min_size=50, max_size=200)
VALUES = st.one_of(PLAIN, PLAIN, DEEP, WIDE)


def refused(value: Any) -> bool:
    return depth_of(value) > DEPTH or has_lone_surrogate(value)


def depth_of(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


def has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, list):
        return any(has_lone_surrogate(v) for v in value)
    if isinstance(value, dict):
        return any(has_lone_surrogate(k) or has_lone_surrogate(v) for k, v in value.items())
    return False


@pytest.fixture
def app(live_server: LiveServer) -> Iterator[Tether]:
    """A worker app with `echo` (returns its payload) on the server's database."""
    app = Tether(live_server.tether.database_url)

    @app.task(id="echo")
    async def echo(payload: Any) -> Any:
        return payload

    now = app.clock.now()
    app.storage.register_tasks([t.record(now) for t in app.tasks.values()],
                               [t.queue_record() for t in app.tasks.values()])
    yield app
    app.close()


def cli(server: LiveServer, *args: str) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env["TETHER_DATABASE_URL"] = server.tether.database_url
    done = subprocess.run([str(TETHER_EXE), *args, "--json"], env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 0, done
    return json.loads(done.stdout)


def test_every_value_reads_back_equal_or_is_refused_at_trigger_time(
        live_server: LiveServer, app: Tether) -> None:
    accepted: dict[str, Any] = {}
    counts = {"accepted": 0, "refused": 0}

    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large])
    @given(value=VALUES)
    @example(value=_nest("\x00", DEPTH)).via("the deepest value stored")
    @example(value=_nest(1, DEPTH + 1)).via("one level too deep")
    @example(value=_nest([], 254)).via("was stored; the API's serializer failed on it")
    @example(value={"\ud800": "\U0001F600"}).via("a lone surrogate as a key")
    @example(value=["\ud83d\ude00"]).via("a pair in JSON text, two surrogates in Python")
    @example(value=[2**53 + 1, 10**400, -0.0, 5e-324, 1.7976931348623157e308]).via("numbers")
    def roundtrip(value: Any) -> None:
        # JSON text escapes every non-ASCII character (lone surrogates too, which UTF-8 cannot
        # carry); the server reads two surrogates that make a pair as one character
        text = json.dumps({"payload": value})
        over_http = json.loads(text)["payload"]
        before = _count(app)
        ids: dict[str, Any] = {}
        with live_server.client() as client:
            sent = client.post("/api/v1/tasks/echo/trigger", content=text,
                               headers={"Content-Type": "application/json"})
            if refused(over_http):
                assert sent.status_code == 400, (sent.status_code, sent.text[:300], ascii(value))
            else:
                assert sent.status_code == 200, (sent.text[:300], ascii(value))
                ids[sent.json()["id"]] = over_http
            try:
                ids[app.trigger("echo", value).id] = value
            except PayloadError:
                assert refused(value), ascii(value)
            else:
                assert not refused(value), ascii(value)
            if not ids:
                counts["refused"] += 1
                assert _count(app) == before, "a refused value was stored"
                return
            counts["accepted"] += 1
            asyncio.run(Worker(app).run_until_idle())
            for run_id, expected in ids.items():
                _read_back(client, app, run_id, expected)
            assert client.get("/api/v1/runs", params={"page[size]": 5}).status_code == 200
        accepted.update(ids)

    roundtrip()
    assert counts["accepted"] >= 10 and counts["refused"] >= 3, counts  # both sides explored
    listed = {run["id"]: run for run in cli(live_server, "runs", "list", "--limit", "1000")}
    for run_id, value in accepted.items():
        assert (listed[run_id]["payload"], listed[run_id]["output"]) == (value, value)
    for run_id in list(accepted)[-CLI_SHOWN:]:
        shown = cli(live_server, "runs", "show", run_id)["run"]
        assert (shown["payload"], shown["output"]) == (accepted[run_id], accepted[run_id])


def _count(app: Tether) -> int:
    return len(app.runs.list(limit=1000))


def _read_back(client: httpx.Client, app: Tether, run_id: str, value: Any) -> None:
    run = app.runs.retrieve(run_id)
    assert (run.status.value, run.payload, run.output) == ("COMPLETED", value, value)
    found = client.get(f"/api/v3/runs/{run_id}")
    assert found.status_code == 200, found.text[:300]
    body = found.json()
    assert (body.get("payload"), body.get("output")) == (value, value)  # null: left out
    page = client.get(f"/runs/{run_id}")
    assert page.status_code == 200, page.text[:300]
