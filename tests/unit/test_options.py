"""Option objects and trigger options: validation happens when they are written, not later."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tether import ConfigurationError, Queue, Retry, Tether
from tether.engine.triggering import MAX_TAGS, TriggerOptions, build_run
from tether.models import RunStatus
from tether.task import TaskSpec


@pytest.fixture
def app() -> Tether:
    return Tether("sqlite:///never-opened.db")  # nothing connects until storage is used


def test_retry_defaults_follow_the_spec() -> None:
    assert Retry() == Retry(max_attempts=3, factor=2.0, min_delay=1.0, max_delay=60.0, jitter=True)


@pytest.mark.parametrize("kwargs", [
    {"max_attempts": 0}, {"factor": 0.5}, {"min_delay": -1.0}, {"min_delay": 5.0, "max_delay": 1.0},
])
def test_retry_rejects_bad_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="Retry"):
        Retry(**kwargs)


def test_retry_round_trips_through_dict() -> None:
    policy = Retry(max_attempts=7, factor=1.5, min_delay=0.1, max_delay=9.0, jitter=False)
    assert Retry.from_dict(json.loads(json.dumps(policy.to_dict()))) == policy
    assert Retry.from_dict({"max_attempts": 2, "unknown": 1}) == Retry(max_attempts=2)


@pytest.mark.parametrize("kwargs", [{"name": ""}, {"name": "x" * 129}, {"name": "q", "concurrency": 0}])
def test_queue_rejects_bad_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="Queue"):
        Queue(**kwargs)


def test_queue_accepts_unlimited_and_limited() -> None:
    assert Queue("media").concurrency is None
    assert Queue("media", concurrency=10).concurrency == 10


def test_task_id_defaults_to_function_name_with_dashes(app: Tether) -> None:
    @app.task
    def process_video_file(payload: Any) -> None: ...

    assert process_video_file.id == "process-video-file"
    assert app.tasks["process-video-file"] is process_video_file
    assert process_video_file.queue == Queue("process-video-file")  # default queue: the task's id
    assert process_video_file.retry == Retry()


def test_task_options(app: Tether) -> None:
    @app.task(id="custom.id", queue="shared", max_duration="2m", retry=Retry(max_attempts=9))
    async def fn(payload: Any) -> None: ...

    assert (fn.id, fn.queue, fn.max_duration, fn.retry.max_attempts) == (
        "custom.id", Queue("shared"), 120.0, 9)
    assert fn.is_async and not fn.takes_ctx


@pytest.mark.parametrize("bad_id", ["-leading", "has space", "x" * 129, "ünï"])
def test_task_id_is_validated(app: Tether, bad_id: str) -> None:
    with pytest.raises(ConfigurationError, match="task id"):
        app.task(id=bad_id)(lambda payload: None)


def test_two_tasks_cannot_share_an_id(app: Tether) -> None:
    app.task(id="same")(lambda payload: 1)
    with pytest.raises(ConfigurationError, match="share the id"):
        app.task(id="same")(lambda payload: 2)


def test_task_needs_a_payload_parameter(app: Tether) -> None:
    with pytest.raises(ConfigurationError, match="payload parameter"):
        app.task(id="no-args")(lambda: None)


def test_trigger_options_reject_unknown_names() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown trigger option\(s\) \['idempotencyKey'\]"):
        TriggerOptions.parse({"idempotencyKey": "k", "priority": 1})
    assert TriggerOptions.parse({"priority": 3, "tags": "a"}).priority == 3


def test_tags_are_deduplicated_and_sorted() -> None:
    assert TriggerOptions(tags=["b", "a", "b"]).tag_list() == ["a", "b"]
    assert TriggerOptions(tags="single").tag_list() == ["single"]
    assert TriggerOptions(tags=[f"t{i}" for i in range(MAX_TAGS)]).tag_list()


@pytest.mark.parametrize("tags", [[f"t{i}" for i in range(MAX_TAGS + 1)], [""], ["x" * 129], [7]])
def test_tag_limits(tags: list[Any]) -> None:
    with pytest.raises(ConfigurationError, match="tag"):
        TriggerOptions(tags=tags).tag_list()


SPEC = TaskSpec("t", Queue("q"), Retry(max_attempts=4), 30.0, None)


def test_build_run_defaults() -> None:
    run = build_run(SPEC, {"a": 1}, TriggerOptions(), 1000.0)
    assert (run.task_id, run.queue, run.status) == ("t", "q", RunStatus.QUEUED)
    assert json.loads(run.payload) == {"a": 1} and json.loads(run.metadata) == {}
    assert (run.available_at, run.expires_at, run.max_attempts, run.max_duration) == (
        1000.0, None, 4, 30.0)
    assert run.idempotency_key is None and run.idempotency_expires_at is None
    assert run.concurrency_key == ""
    assert Retry.from_dict(json.loads(run.retry)) == SPEC.retry


def test_build_run_with_options() -> None:
    opts = TriggerOptions(delay="5m", ttl="1h", idempotency_key="k", priority=3, max_attempts=2,
                          queue="other", concurrency_key="c", tags=["x"], parent_id="run_p")
    run = build_run(SPEC, None, opts, 1000.0)
    assert run.status == RunStatus.DELAYED and run.available_at == 1300.0
    assert run.expires_at == 1300.0 + 3600.0
    assert run.idempotency_expires_at == 1000.0 + 30 * 86400.0
    assert (run.priority, run.max_attempts, run.queue, run.concurrency_key) == (3, 2, "other", "c")
    assert (run.parent_id, run.root_id, run.tags) == ("run_p", "run_p", ["x"])


@pytest.mark.parametrize("opts", [
    {"priority": "high"}, {"max_attempts": 0}, {"metadata": ["x"]}, {"idempotency_key": ""},
    {"concurrency_key": 5}, {"delay": "soon"}, {"ttl": -1},
])
def test_build_run_rejects_bad_options(opts: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        build_run(SPEC, None, TriggerOptions(**opts), 1000.0)


def test_build_run_ids_increase() -> None:
    ids = [build_run(SPEC, i, TriggerOptions(), 0.0).id for i in range(50)]
    assert ids == sorted(ids) and len(set(ids)) == 50
