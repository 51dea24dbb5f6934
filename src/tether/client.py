"""`tether.Client`: Tether's Python API over HTTP, for application code that reaches a Tether
server (`tether serve`) instead of sharing its database.

    from tether import Client

    with Client("http://127.0.0.1:8030", api_key) as client:
        run = client.trigger("send-report", {"day": "2024-05-01"}, tags=["user:7"])
        print(run.result(timeout=60))

The methods mirror the app's (`app.trigger`, `app.runs`, `app.tokens`) and return the same
`Run` and `Token` views; the server's error answers become the same exceptions.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import time
from collections.abc import Iterator
from datetime import datetime
from enum import StrEnum
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from tether.client_http import ErrorFactory, ErrorMap, Transport
from tether.client_json import (
    OPTIONS,
    json_payload,
    run_from_json,
    token_from_json,
    trigger_options,
    when_text,
)
from tether.durations import Duration
from tether.engine.triggering import batch_items
from tether.errors import (
    ConfigurationError,
    InvalidTransition,
    RunFailed,
    RunNotFound,
    TokenNotFound,
    TokenTimedOut,
    UnknownTask,
)
from tether.models import Run, RunStatus, Token, TokenStatus

if TYPE_CHECKING:
    import httpx

POLL_FIRST, POLL_FACTOR, POLL_MAX = 0.05, 1.5, 1.0  # result(): seconds between two looks
PAGE_SIZE = 100  # the API's largest page


def _path(value: str) -> str:
    return quote(value, safe="")


def _comma_list(value: str | list[str] | None) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else ",".join(value)


def _statuses(value: str | list[str] | None, kind: type[StrEnum], what: str) -> str | None:
    """A status filter as the API's comma list, checked against Tether's statuses."""
    given = [value] if isinstance(value, str) else list(value or [])
    known = [s.value for s in kind]
    wrong = [s for s in given if s.upper() not in known]
    if wrong:
        raise ConfigurationError(f"unknown {what} status(es) {wrong}; known: {', '.join(known)}")
    return ",".join(s.upper() for s in given) or None


def _unknown_task(task_id: str) -> ErrorFactory:
    def make(message: str) -> UnknownTask:
        error = UnknownTask(task_id, [])
        text = message if task_id in message else f"unknown task {task_id!r}: {message}"
        error.args = (text,)
        return error

    return make


class RemoteRunHandle:
    """What `Client.trigger` returns: like `RunHandle`, but it asks the server."""

    def __init__(self, runs: RemoteRuns, run_id: str, is_cached: bool = False) -> None:
        self._runs = runs
        self.id = run_id
        self.is_cached = is_cached  # an idempotency key matched: this is the earlier run

    def __repr__(self) -> str:
        return f"<RemoteRunHandle {self.id}>"

    def retrieve(self) -> Run:
        """The run as the server has it now."""
        return self._runs.retrieve(self.id)

    def status(self) -> RunStatus:
        """The run's status now."""
        return self.retrieve().status

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the run to finish and return its output; raises RunFailed if it did not
        complete, TimeoutError if it is still going after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = POLL_FIRST
        while True:
            run = self.retrieve()
            if run.status == RunStatus.COMPLETED:
                return run.output
            if run.is_final:
                raise RunFailed(run.id, run.status, run.error)
            left = pause if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"run {self.id} is still {run.status} after {timeout}s")
            time.sleep(min(pause, left))
            pause = min(POLL_MAX, pause * POLL_FACTOR)

    async def result_async(self, timeout: float | None = None) -> Any:
        """`result` for async code: the polling runs in a thread."""
        return await asyncio.to_thread(self.result, timeout)


class RemoteRuns:
    """`client.runs`: the same methods as `app.runs`, over HTTP."""

    def __init__(self, api: Transport) -> None:
        self._api = api

    def _not_found(self, run_id: str) -> ErrorMap:
        return {404: lambda _message: RunNotFound(run_id)}

    def _change(self, run_id: str) -> ErrorMap:
        """Errors of a change to a run: the server answers 400 when it does not apply to the
        run's status (not 409, which the SDK would retry)."""
        return {**self._not_found(run_id), 400: InvalidTransition, 409: InvalidTransition}

    def retrieve(self, run_id: str) -> Run:
        """The run with this id; RunNotFound if there is none."""
        data = self._api.request("GET", f"/api/v3/runs/{_path(run_id)}",
                                 errors=self._not_found(run_id))
        return run_from_json(data)

    def handle(self, run_id: str) -> RemoteRunHandle:
        """A handle to wait for an existing run's result."""
        self.retrieve(run_id)
        return RemoteRunHandle(self, run_id)

    def list(self, *, status: str | list[str] | None = None, task: str | list[str] | None = None,
             tag: str | list[str] | None = None, queue: str | list[str] | None = None,
             limit: int = 25, before: str | None = None) -> list[Run]:
        """Runs, newest first, following the API's cursor pages. `before` is a run id: list runs
        created before it. List items carry no payload or output (`retrieve` has them)."""
        filters = {"filter[status]": _statuses(status, RunStatus, "run"),
                   "filter[taskIdentifier]": _comma_list(task),
                   "filter[tag]": _comma_list(tag), "filter[queue]": _comma_list(queue)}
        params = {k: v for k, v in filters.items() if v}
        items = _pages(self._api, "/api/v1/runs", params, max(1, min(limit, 1000)), before)
        return [run_from_json(item) for item in items]

    def cancel(self, run_id: str) -> Run:
        """Cancel a run that has not finished (and its unfinished children)."""
        self._api.request("POST", f"/api/v2/runs/{_path(run_id)}/cancel",
                          errors=self._change(run_id))
        return self.retrieve(run_id)

    def replay(self, run_id: str) -> RemoteRunHandle:
        """A new run with the same task, payload, tags, metadata and options."""
        data = self._api.request("POST", f"/api/v1/runs/{_path(run_id)}/replay",
                                 errors=self._not_found(run_id))
        return RemoteRunHandle(self, data["id"])

    def retry(self, run_id: str) -> Run:
        """Re-open a FAILED, TIMED_OUT or CANCELED run for one more attempt, keeping its steps."""
        data = self._api.request("POST", f"/api/v1/runs/{_path(run_id)}/retry",
                                 errors=self._change(run_id))
        return run_from_json(data)

    def reschedule(self, run_id: str, delay: Duration | datetime) -> Run:
        """Move a DELAYED run's start to `delay` from now (or to a datetime)."""
        data = self._api.request("POST", f"/api/v1/runs/{_path(run_id)}/reschedule",
                                 json={"delay": when_text(delay, "delay")},
                                 errors=self._change(run_id))
        return run_from_json(data)


def _pages(api: Transport, path: str, params: dict[str, str], limit: int,
           after: str | None) -> Iterator[dict[str, Any]]:
    """Up to `limit` items of a cursor-paged list, newest first, starting after `after`."""
    left = limit
    while left > 0:
        query = {**params, "page[size]": str(min(PAGE_SIZE, left))}
        if after:
            query["page[after]"] = after
        body = api.request("GET", path, params=query)
        data = body.get("data") or []
        yield from data[:left]
        left -= len(data)
        after = (body.get("pagination") or {}).get("next")
        if not after or not data:
            return


class RemoteTokens:
    """`client.tokens`: the same methods as `app.tokens`, over HTTP."""

    def __init__(self, api: Transport) -> None:
        self._api = api

    def _path(self, token_id: str) -> str:
        return f"/api/v1/waitpoints/tokens/{_path(token_id)}"

    def create(self, *, timeout: Duration | None = None, idempotency_key: str | None = None,
               tags: str | builtins.list[str] | None = None,
               idempotency_key_ttl: Duration | None = None) -> Token:
        """A token outside any run (its id can be handed to a run in a payload); an earlier
        token made with `idempotency_key` is returned instead, until `idempotency_key_ttl`."""
        body: dict[str, Any] = {}
        if idempotency_key is not None:
            body["idempotencyKey"] = idempotency_key
        if idempotency_key_ttl is not None:
            name, convert = OPTIONS["idempotency_key_ttl"]
            body[name] = convert(idempotency_key_ttl)
        if tags is not None:
            body["tags"] = [tags] if isinstance(tags, str) else builtins.list(tags)
        if timeout is not None:
            body["timeout"] = when_text(timeout, "timeout")
        data = self._api.request("POST", "/api/v1/waitpoints/tokens", json=body)
        return self.retrieve(data["id"])

    def retrieve(self, token_id: str) -> Token:
        """The token with this id; TokenNotFound if there is none."""
        data = self._api.request("GET", self._path(token_id),
                                 errors={404: lambda _m: TokenNotFound(token_id)})
        return token_from_json(data)

    def list(self, *, status: str | builtins.list[str] | None = None,
             limit: int = 25, before: str | None = None) -> builtins.list[Token]:
        """Tokens, newest first. `status`: WAITING, COMPLETED or TIMED_OUT."""
        statuses = _statuses(status, TokenStatus, "token")
        params = {"filter[status]": statuses} if statuses else {}
        items = _pages(self._api, "/api/v1/waitpoints/tokens", params,
                       max(1, min(limit, 1000)), before)
        return [token_from_json(item) for item in items]

    def complete(self, token_id: str, data: Any = None) -> Token:
        """Complete a token: the run waiting for it resumes with `data`. Completing it again is
        harmless (the first data stays); an unknown or timed-out token is an error."""
        self._api.request("POST", f"{self._path(token_id)}/complete",
                          json={"data": json_payload(data, "token data")},
                          errors={404: lambda _m: TokenNotFound(token_id),
                                  400: lambda _m: TokenTimedOut(token_id),
                                  409: lambda _m: TokenTimedOut(token_id)})
        return self.retrieve(token_id)


class Client:
    """A Tether server's API: `Client(url, api_key)`; close it, or use it as a context manager.

    `retries`: how many more times a request is sent after the server could not be reached or
    answered 429/502/503/504 (a retried trigger carries the same request key: one run).
    """

    def __init__(self, url: str, api_key: str, *, timeout: float = 30.0, retries: int = 2,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._api = Transport(url, api_key, timeout=timeout, retries=retries, transport=transport)
        self.url = self._api.url
        self.runs = RemoteRuns(self._api)
        self.tokens = RemoteTokens(self._api)

    def __repr__(self) -> str:
        return f"<tether.Client {self.url}>"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the client's connections."""
        self._api.close()

    def trigger(self, task_id: str, payload: Any = None, **options: Any) -> RemoteRunHandle:
        """Trigger a task by id; options as for `app.trigger` (idempotency_key, delay, ttl, tags,
        metadata, concurrency_key, priority, max_attempts, queue, idempotency_key_ttl)."""
        body = {"payload": json_payload(payload), "options": trigger_options(options)}
        data = self._api.request("POST", f"/api/v1/tasks/{_path(task_id)}/trigger", json=body,
                                 errors={404: _unknown_task(task_id)})
        return RemoteRunHandle(self.runs, data["id"], bool(data.get("isCached")))

    def batch_trigger(self, task_id: str, items: list[Any], **options: Any) -> list[RemoteRunHandle]:
        """Trigger many runs of a task in one batch; items are payloads or `BatchItem`s with
        options of their own. The handles are in the items' order."""
        lines = [{"index": index, "task": task_id, "payload": json_payload(payload),
                  "options": trigger_options(item_options)}
                 for index, (payload, item_options) in enumerate(batch_items(items, options))]
        if not lines:
            return []
        unknown = {404: _unknown_task(task_id)}
        batch = self._api.request("POST", "/api/v3/batches", errors=unknown,
                                  json={"runCount": len(lines), "taskIdentifiers": [task_id]})
        stream = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
        self._api.request("POST", f"/api/v3/batches/{_path(batch['id'])}/items", content=stream,
                          headers={"Content-Type": "application/x-ndjson"}, errors=unknown)
        info = self._api.request("GET", f"/api/v2/batches/{_path(batch['id'])}")
        cached = bool(batch.get("isCached"))
        return [RemoteRunHandle(self.runs, run_id, cached) for run_id in info["runs"]]
