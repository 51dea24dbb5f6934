"""Running tether.testing the way a user does: their tasks module, their conftest with the
`tether_app` fixture, their test file, in a pytest session of its own (pytester)."""

from __future__ import annotations

from importlib.metadata import entry_points
from textwrap import dedent

import pytest

# the user's app is made with its "production" URL, in a directory that does not exist: the
# kit must never open it (kit() checks nothing appeared there)
TASKS_HEADER = '''
from pathlib import Path
from typing import Any

from tether import Context, Queue, Retry, SyncContext, Tether

PROD = Path(__file__).parent / "prod" / "prod.db"
app = Tether(f"sqlite:///{PROD}")
'''

CONFTEST = '''
import pytest

from tasks import app


@pytest.fixture
def tether_app():
    return app
'''


def plugin_args() -> list[str]:
    """Load the plugin by name unless its entry point is installed (then pytest loaded it)."""
    installed = any(ep.value == "tether_pytest" for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", "tether_pytest"]


def kit(pytester: pytest.Pytester, tasks: str, tests: str, *args: str,
        conftest: str = CONFTEST) -> pytest.RunResult:
    pytester.makepyfile(tasks=TASKS_HEADER + dedent(tasks))
    pytester.makeconftest(conftest)
    pytester.makepyfile(test_user=dedent(tests))
    pytester.syspathinsert()
    result = pytester.runpytest(*plugin_args(), "-p", "no:cacheprovider", "-W", "error", *args)
    assert not (pytester.path / "prod").exists(), "the app's own database was touched"
    return result
