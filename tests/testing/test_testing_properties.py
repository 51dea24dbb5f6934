"""Property: whatever JSON value override_step is given is the step's result, as the task sees
it and as stored; and a payload given to env.run is the payload the task and triggered() see."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether import Context, Tether
from tether.testing import TetherEnv

TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)  # no lone surrogates
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | TEXT
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12)


def test_overrides_and_payloads_round_trip(tmp_path_factory: pytest.TempPathFactory) -> None:
    app = Tether(f"sqlite:///{tmp_path_factory.mktemp('own') / 'missing' / 'own.db'}")

    @app.task
    async def fetch(payload: Any, ctx: Context) -> dict[str, Any]:
        fetched = await ctx.step("fetch", lambda: "the real one")
        return {"payload": payload, "fetched": fetched}

    directory: Path = tmp_path_factory.mktemp("env")
    with TetherEnv(app, directory) as env:

        @settings(max_examples=60, deadline=None)
        @given(result=JSON, payload=JSON)
        def check(result: Any, payload: Any) -> None:
            env.clear_faults()
            env.override_step("fetch", result)
            run = env.run(fetch, payload)
            assert run.output == {"payload": payload, "fetched": result}
            assert env.steps(run)["fetch"]["result"] == result
            assert env.triggered(fetch)[-1].payload == payload

        check()


class FakeRun:
    """What the fault rules read of a run: its id and task."""

    def __init__(self, run_id: str, task_id: str) -> None:
        self.id, self.task_id = run_id, task_id


NAMES = st.sampled_from(["charge", "ship", "mail"])


@settings(max_examples=200, deadline=None)
@given(runs=st.lists(st.tuples(st.sampled_from(["a", "b"]), st.lists(NAMES, max_size=6)),
                     max_size=5),
       target=NAMES, occurrence=st.integers(1, 3), by_key=st.booleans(),
       task=st.sampled_from([None, "a"]), times=st.integers(1, 4))
def test_fail_rules_strike_the_calls_they_name(runs: list[tuple[str, list[str]]], target: str,
                                               occurrence: int, by_key: bool, task: str | None,
                                               times: int) -> None:
    from tether.testing.faults import Faults, InjectedFault, Rule

    faults = Faults()
    step = f"{target}#{occurrence}" if by_key and occurrence > 1 else target
    faults.add(Rule("fail", step, task, times))
    struck, expected = [], []
    for number, (task_id, names) in enumerate(runs):
        run: Any = FakeRun(f"run_{number}", task_id)
        seen: dict[str, int] = {}
        for name in names:
            seen[name] = seen.get(name, 0) + 1
            key = name if seen[name] == 1 else f"{name}#{seen[name]}"
            named = key == step or name == step
            if named and (task is None or task == task_id) and len(expected) < times:
                expected.append((run.id, key))
            try:
                assert faults.target(run, key, name, "step", lambda: "ran")() == "ran"
            except InjectedFault:
                struck.append((run.id, key))
    assert struck == expected
    assert bool(faults.unused()) == (not expected)
