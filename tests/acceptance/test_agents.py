"""Durable Pydantic AI agents in real worker processes (offline: FunctionModel): a worker
SIGKILLed during the third tool call resumes on another worker without repeating the model
requests it had completed; an approval waits for its token, completed from another process."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from acceptance_support import (
    TETHER_EXE,
    WorkerProcess,
    Workers,
    make_env,
    read_lines,
    wait_for_line,
    wait_for_status,
)

from tether import RunStatus, Tether

pytest.importorskip("pydantic_ai")
pytestmark = pytest.mark.slow


def stored_steps(client: Tether, run_id: str, count: int, within: float) -> list[str]:
    """Wait (at most `within` seconds) until `count` steps of the run are stored; their names."""
    deadline = time.monotonic() + within
    while True:
        names = [e.name for e in client.runs.trace(run_id) if e.kind == "step"]
        if len(names) >= count:
            return names
        assert time.monotonic() < deadline, f"only {len(names)} of {count} steps stored: {names}"
        time.sleep(0.01)


def test_sigkill_during_the_third_tool_call_does_not_repeat_model_requests(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess],
    workers: Workers, client: Tether, tmp_path: Path,
) -> None:
    app = app_file("agent_app.py")
    first = start_worker(app)
    run_id = client.trigger("research", "what do we know?").id

    wait_for_line(tmp_path / "executions.log", "lookup 3", context=workers.describe)
    # model 1, tool 1, model 2, tool 2, model 3: stored before the third tool call started
    # (PostgreSQL's step pipeline writes them behind the attempt's back: a moment, never seconds)
    stored_steps(client, run_id, 5, within=5.0)
    first.kill()
    assert first.proc.returncode == -9, first.describe()
    assert read_lines(tmp_path / "model_calls.log") == ["request 1", "request 2", "request 3"]

    (tmp_path / "release").touch()
    start_worker(app)
    run = wait_for_status(client, run_id, RunStatus.COMPLETED, context=workers.describe)

    assert run.output == {"answer": "fact 1 + fact 2 + fact 3", "attempt": 2}
    # the three requests made before the crash were not made again; only the fourth is new
    assert read_lines(tmp_path / "model_calls.log") == [f"request {i}" for i in range(1, 5)]
    # the two finished tool calls were not made again; the interrupted one was
    assert read_lines(tmp_path / "executions.log") == ["lookup 1", "lookup 2", "lookup 3",
                                                       "lookup 3"]
    steps = [(e.name, e.attempt) for e in client.runs.trace(run_id) if e.kind == "step"]
    request, call = "research__model.request", "research__function_toolset__<agent>.call_tool:lookup"
    assert steps == [(request, 1), (call, 1), (f"{request}#2", 1), (f"{call}#2", 1),
                     (f"{request}#3", 1), (f"{call}#3", 2), (f"{request}#4", 2)]
    usage = run.metadata["agent.usage"]["research"]
    assert usage["requests"] == 4 and usage["tool_calls"] == 3


def test_an_approval_waits_for_its_token_completed_from_another_process(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess],
    workers: Workers, client: Tether, tmp_path: Path,
) -> None:
    app = app_file("agent_app.py")
    start_worker(app)
    run_id = client.trigger("refund", "refund my order").id

    waiting = wait_for_status(client, run_id, RunStatus.WAITING, context=workers.describe)
    [asked] = waiting.metadata["agent.waiting"]
    assert (asked["tool"], asked["args"], asked["kind"]) == ("refund", {"amount": 30}, "approval")
    assert not (tmp_path / "executions.log").exists()  # not called before the person answered
    token = client.tokens.retrieve(asked["token"])
    assert token.tags == ["agent-approval", "tool:refund"]

    done = subprocess.run([str(TETHER_EXE), "tokens", "complete", asked["token"],
                           '{"approved": true, "override_args": {"amount": 25}}'],
                          env=make_env(client.database_url), cwd=tmp_path, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done
    run = wait_for_status(client, run_id, RunStatus.COMPLETED, context=workers.describe)
    assert run.output == "refund: refunded 25"
    assert read_lines(tmp_path / "executions.log") == ["refund 25"]
    assert "agent.waiting" not in run.metadata
    assert run.metadata["agent.usage"]["refunds"]["requests"] == 2


def test_an_at_most_once_tool_interrupted_by_sigkill_is_never_called_again(
    app_file: Callable[[str], Path], start_worker: Callable[..., WorkerProcess],
    workers: Workers, client: Tether, tmp_path: Path,
) -> None:
    app = app_file("agent_app.py")
    first = start_worker(app)
    run_id = client.trigger("payout", "pay the supplier").id

    wait_for_line(tmp_path / "executions.log", "transfer 100", context=workers.describe)
    first.kill()
    (tmp_path / "release").touch()
    start_worker(app)
    run = wait_for_status(client, run_id, RunStatus.FAILED, context=workers.describe)

    assert run.error is not None and run.error["type"] == "tether.errors.OnceInterrupted"
    assert read_lines(tmp_path / "executions.log") == ["transfer 100"]  # never again
    assert read_lines(tmp_path / "model_calls.log") == ["treasurer 1"]  # nor the request
