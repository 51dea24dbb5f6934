"""The pytest plugin of tether.testing, registered by the tether package (entry point
`pytest11`). It lives outside the `tether` package so that loading it imports nothing of
tether: a test session that uses none of its fixtures pays nothing. See docs/testing.md.

Fixtures:
- `tether_env`: a `tether.testing.TetherEnv` running the app of your `tether_app` fixture on
  a temporary SQLite file with a manual clock (the app's own database is never touched);
- `tether_start`: where the env's clock starts (override it to choose; default
  2026-01-01T00:00:00Z);
- `tether_app`: yours to define in conftest.py, returning your `Tether`.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

import pytest

_PASSED = pytest.StashKey[bool]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, Any, None]:
    """Remember whether the call of a test using tether_env passed: unused faults are reported
    only then."""
    outcome = yield
    if call.when == "call" and "tether_env" in getattr(item, "fixturenames", ()):
        item.stash[_PASSED] = outcome.get_result().passed


@pytest.fixture
def tether_app() -> Any:
    """Define this fixture in your conftest.py: it returns your `Tether` app."""
    raise pytest.UsageError(
        "tether_env needs your app: define a `tether_app` fixture in conftest.py that returns "
        "it, e.g.\n\n    @pytest.fixture\n    def tether_app():\n        from myproject.tasks "
        "import app\n        return app\n")


@pytest.fixture
def tether_start() -> Any:
    """Where the env's clock starts: a timezone-aware datetime or epoch seconds; None: the
    default (2026-01-01T00:00:00Z). Override it to choose."""
    return None


@pytest.fixture
def tether_env(request: pytest.FixtureRequest, tether_app: Any, tether_start: Any,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The app of `tether_app` executed inline on a temporary SQLite file with a manual clock:
    `env.run(task, payload)`, `env.advance("1d")`, `env.complete_token(...)`, `env.drain()`,
    `env.triggered(task)`, `env.fail_step(...)`, `env.crash_at(...)`, `env.override_step(...)`.
    After a test that passed, a fault that never matched a step is an error."""
    from tether.testing import TetherEnv

    env = TetherEnv(tether_app, tmp_path_factory.mktemp("tether"), start=tether_start)
    try:
        yield env
        if request.node.stash.get(_PASSED, False):
            env.check_faults()
    finally:
        env.close()
