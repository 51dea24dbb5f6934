"""Helpers for acceptance tests: real `tether worker` processes on a real SQLite file.

Every process a test starts is killed at teardown, whatever the outcome. Every wait is bounded by a
deadline and fails the test with a message that includes what the workers logged.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TypeVar

import pytest

from tether import Run, RunStatus, Tether

T = TypeVar("T")

HERE = Path(__file__).parent
APPS = HERE / "apps"
TETHER_EXE = Path(sys.executable).with_name("tether")
READY_LINE = "serving"  # the worker logs "worker ... serving N task(s)" once registered

POLL = 0.02


# -- waiting --------------------------------------------------------------------------------------
def wait_until(predicate: Callable[[], T | None], timeout: float,
               message: str | Callable[[], str]) -> T:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            pytest.fail(f"timed out after {timeout:g}s: {text}")
        time.sleep(POLL)


def read_lines(path: Path) -> list[str]:
    """The complete lines of a side file (a partly written last line is left out)."""
    if not path.exists():
        return []
    text = path.read_text()
    if not text.endswith("\n"):
        text = text.rpartition("\n")[0]
    return [line for line in text.split("\n") if line]


def wait_for_lines(path: Path, count: int, timeout: float = 15.0,
                   context: Callable[[], str] | None = None) -> list[str]:
    """Wait until the side file `path` holds at least `count` lines; returns them."""

    def enough() -> list[str] | None:
        lines = read_lines(path)
        return lines if len(lines) >= count else None

    def message() -> str:
        text = f"{path.name} has {len(read_lines(path))} line(s), expected {count}: {read_lines(path)}"
        return text + ("\n" + context() if context else "")

    return wait_until(enough, timeout, message)


def wait_for_line(path: Path, line: str, timeout: float = 15.0,
                  context: Callable[[], str] | None = None) -> list[str]:
    """Wait until the side file `path` holds `line`; returns all its lines."""

    def found() -> list[str] | None:
        lines = read_lines(path)
        return lines if line in lines else None

    def message() -> str:
        text = f"{path.name} never got the line {line!r}; it has {read_lines(path)}"
        return text + ("\n" + context() if context else "")

    return wait_until(found, timeout, message)


def wait_for_status(client: Tether, run_id: str, statuses: set[RunStatus] | RunStatus,
                    timeout: float = 20.0, context: Callable[[], str] | None = None) -> Run:
    wanted = {statuses} if isinstance(statuses, RunStatus) else statuses
    last: list[Run] = []

    def reached() -> Run | None:
        run = client.runs.retrieve(run_id)
        last[:] = [run]
        return run if run.status in wanted else None

    def message() -> str:
        seen = last[0] if last else None
        text = (f"run {run_id} never reached {sorted(wanted)}; last status "
                f"{seen.status if seen else '?'}, attempts {seen.attempts if seen else '?'}, "
                f"error {seen.error if seen else None}")
        return text + ("\n" + context() if context else "")

    return wait_until(reached, timeout, message)


# -- worker processes -----------------------------------------------------------------------------
class WorkerProcess:
    """A `tether worker APP` subprocess whose stdout and stderr go to a log file."""

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path, log_file: IO[bytes]) -> None:
        self.proc = proc
        self.log_path = log_path
        self._log_file = log_file

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def describe(self) -> str:
        state = "running" if self.proc.poll() is None else f"exited with {self.proc.returncode}"
        return f"--- worker {self.pid} ({state}) log:\n{self.log()[-4000:]}"

    def wait_log(self, text: str, timeout: float = 15.0) -> None:
        def seen() -> bool:
            if text in self.log():
                return True
            if self.proc.poll() is not None:
                pytest.fail(f"worker exited ({self.proc.returncode}) before logging {text!r}\n"
                            + self.describe())
            return False

        wait_until(seen, timeout, lambda: f"worker never logged {text!r}\n{self.describe()}")

    def wait_ready(self, timeout: float = 20.0) -> WorkerProcess:
        self.wait_log(READY_LINE, timeout)
        return self

    def send(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL, then reap the process so its pid no longer exists (not even as a zombie)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def wait_exit(self, timeout: float = 20.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker did not exit within {timeout:g}s\n{self.describe()}")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.kill()
        self._log_file.close()


class Workers:
    """Starts worker processes and kills every one of them in `close()`."""

    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.directory = directory
        self.env = env
        self.started: list[WorkerProcess] = []

    def start(self, app_file: Path, *args: str, ready: bool = True) -> WorkerProcess:
        index = len(self.started) + 1
        log_path = self.directory / f"worker-{index}.log"
        log_file = log_path.open("wb")
        proc = subprocess.Popen(
            [str(TETHER_EXE), "worker", str(app_file), *args], cwd=self.directory, env=self.env,
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT)
        worker = WorkerProcess(proc, log_path, log_file)
        self.started.append(worker)
        return worker.wait_ready() if ready else worker

    def describe(self) -> str:
        return "\n".join(w.describe() for w in self.started)

    def close(self) -> None:
        for worker in self.started:
            worker.close()


def bus_folder(db_path: Path) -> Path:
    """Where the SQLite wake-up sockets of this database live (see tether.wakeup.SocketBus)."""
    digest = hashlib.sha256(str(db_path.resolve()).encode()).hexdigest()[:16]
    return Path("/tmp") / f"tether-{digest}"


def make_env(database: Path | str) -> dict[str, str]:
    """The environment of a worker or CLI process: a database URL, or an SQLite file's path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    url = database if isinstance(database, str) else f"sqlite:///{database.resolve()}"
    env["TETHER_DATABASE_URL"] = url
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"
    return env


def otel_env(database: Path | str, endpoint: str, **extra: str) -> dict[str, str]:
    """`make_env` without the caller's OTEL_* variables, exporting over OTLP/HTTP to `endpoint`
    soon (50 ms batches), with `extra` variables."""
    env = {k: v for k, v in make_env(database).items() if not k.startswith("OTEL_")}
    env.update(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_BSP_SCHEDULE_DELAY="50", **extra)
    return env


def copy_app(name: str, directory: Path) -> Path:
    """Copy tests/acceptance/apps/NAME into `directory`: side files are written beside it."""
    target = directory / name
    shutil.copyfile(APPS / name, target)
    return target


def run_cli(*args: str, env: dict[str, str], cwd: Path,
            timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run `tether ARGS...` to completion. One that outlives `timeout` is sent SIGABRT, so that
    faulthandler (PYTHONFAULTHANDLER, set by `make_env`) prints where each of its threads was,
    and the test fails with those stacks."""
    with subprocess.Popen([str(TETHER_EXE), *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)
            try:
                stdout, stderr = process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                stdout, stderr = process.communicate()
            pytest.fail(f"tether {' '.join(args)} ran past {timeout} s; its stdout:\n{stdout}\n"
                        f"its stderr, with the threads' stacks:\n{stderr}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def assert_clean_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """A failed command printed one line on stderr, `Error: ...`, with no traceback."""
    shown = f"exit {result.returncode}\nstdout: {result.stdout!r}\nstderr: {result.stderr!r}"
    assert result.returncode != 0, shown
    assert "Traceback" not in result.stderr + result.stdout, shown
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, shown
    assert lines[0].startswith("Error: "), shown
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} missing; {shown}"
    return lines[0]
