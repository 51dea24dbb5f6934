"""tether.testing: run a Tether app's tasks in tests, inline, on a temporary SQLite file with a
manual clock, with fault injection. The pytest plugin (tether_pytest, registered by the
package) gives the `tether_env` fixture; `TetherEnv` works without pytest too.
See docs/testing.md."""

from tether.engine.faults import WorkerDied
from tether.testing.env import START, TetherEnv
from tether.testing.faults import InjectedFault, TestingError

__all__ = ["START", "InjectedFault", "TestingError", "TetherEnv", "WorkerDied"]
