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
