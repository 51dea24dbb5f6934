"""Code versions: which version of the code each worker runs, and `app.versions.list()`: per
version, its live workers and its unfinished runs, so an operator knows when an old fleet can go.

A worker runs one version: `tether worker --version`, else `Tether(version=...)`, else the
environment's TETHER_VERSION, else a hash of the sources of the app's tasks. A run records the
version of the worker that first executes it (its first claim sets `runs.version`)."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tether.errors import ConfigurationError
from tether.models import Run, RunStatus

if TYPE_CHECKING:
    from tether.app import Tether

VERSION_ENV = "TETHER_VERSION"
_VALID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+@/-]{0,127}")
WORKER_HORIZON = 60.0  # a worker seen within this many seconds counts as live


def check_version(value: str) -> str:
    """A version is 1-128 letters, digits and . _ : + @ / - (a git sha, a tag, a build id)."""
    if not isinstance(value, str) or not _VALID.fullmatch(value):
        raise ConfigurationError(
            f"version must be 1-128 letters, digits and . _ : + @ / - (starting with a letter or "
            f"digit), got {value!r}")
    return value


def env_version() -> str | None:
    value = os.environ.get(VERSION_ENV, "").strip()
    return check_version(value) if value else None


def sources_version(tasks: Iterable[Any]) -> str:
    """A hash of the tasks' ids and sources (each task's `code_version`)."""
    digest = hashlib.sha256()
    for task in sorted(tasks, key=lambda t: t.id):
        digest.update(f"{task.id}\0{task.code_version}\n".encode())
    return "src-" + digest.hexdigest()[:12]


@dataclass(frozen=True)
class VersionInfo:
    """One code version: its live workers and its unfinished runs by status."""

    version: str | None
    """The version; None for runs that have not started yet (no worker picked them)."""
    workers: list[str] = field(default_factory=list)
    """Its live workers, as `hostname:pid`."""
    runs: dict[str, int] = field(default_factory=dict)
    """Its unfinished runs (QUEUED, DELAYED, EXECUTING, WAITING), counted by status."""

    @property
    def unfinished(self) -> int:
        return sum(self.runs.values())


class Versions:
    def __init__(self, app: Tether) -> None:
        self._app = app

    def pinned_note(self, run: Run, has_history: bool) -> str | None:
        """For a run that waits to go on with its version's code: which version, and whether
        any worker of it is running. None for a run that is not pinned or not waiting."""
        if run.version is None or run.is_final or not has_history \
                or run.status == RunStatus.EXECUTING:
            return None
        horizon = max(WORKER_HORIZON, 3 * self._app.lease_seconds)
        live = [w for w in self._app.storage.list_workers(self._app.clock.now() - horizon)
                if w.version == run.version]
        if live:
            return (f"pinned to version {run.version}: {len(live)} live worker(s) of it will go "
                    "on with it")
        return (f"waits for a worker of version {run.version}: none is running (start one, or "
                "move the run with `tether runs migrate`)")

    def list(self) -> list[VersionInfo]:
        """Every version with a live worker or an unfinished run; the newest worker's first."""
        storage = self._app.storage
        horizon = max(WORKER_HORIZON, 3 * self._app.lease_seconds)
        workers = storage.list_workers(self._app.clock.now() - horizon)
        by_version: dict[str | None, list[str]] = {}
        for w in sorted(workers, key=lambda w: -w.started_at):
            by_version.setdefault(w.version, []).append(f"{w.hostname}:{w.pid}")
        runs: dict[str | None, dict[str, int]] = {}
        for version, status, count in storage.version_counts():
            runs.setdefault(version, {})[status] = count
        order = list(dict.fromkeys([*by_version, *sorted(runs, key=lambda v: (v is None, v or ""))]))
        return [VersionInfo(v, by_version.get(v, []), runs.get(v, {})) for v in order]
