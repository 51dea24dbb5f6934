"""Request idempotency: a POST that carries `x-trigger-request-idempotency-key` and was answered
before gets the stored answer again, and nothing is done twice. Trigger.dev's SDK reuses the
key across its own retries of one call (a timeout, a 5xx), so a retried trigger makes one run.

Use it in a route as a dependency and let it produce the answer:

    @router.post("/api/v1/things", response_model=Thing, status_code=201)
    def create_thing(body: ThingBody, reply: ReplyDep) -> Response:
        return reply.answer(lambda: make_thing(body), status_code=201)

Only successful answers are kept (errors are computed again on a retry). A key is scoped by the
API key and the route (method and path), kept for a day (`KEEP_SECONDS`); older ones are pruned
at most once an hour per process.
"""

from __future__ import annotations

import hashlib
import threading
import time
import weakref
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from pydantic import BaseModel

from tether.app import Tether
from tether.keys import ApiKey
from tether.serialization import dumps
from tether.server.deps import ApiKeyDep, TetherDep
from tether.storage.server import StoredReply

HEADER = "x-trigger-request-idempotency-key"
KEEP_SECONDS = 24 * 3600.0
PRUNE_EVERY = 3600.0
REPLAYED = "x-tether-replayed"  # set on an answer given again from storage

_pruned: weakref.WeakKeyDictionary[Tether, float] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def body_text(body: BaseModel | dict[str, Any] | list[Any]) -> str:
    """JSON text of an answer; optional model fields that are absent are left out."""
    if isinstance(body, BaseModel):
        return body.model_dump_json(exclude_none=True)
    return dumps(body, "response")


def _due_for_pruning(tether: Tether) -> bool:
    now = time.monotonic()
    with _lock:
        last = _pruned.get(tether)
        if last is not None and now - last < PRUNE_EVERY:
            return False
        _pruned[tether] = now
    return True


class Replies:
    """The request's idempotency key (if any) and the stored answer to it."""

    def __init__(self, tether: Tether, request: Request, key: ApiKey) -> None:
        self.tether = tether
        sent = request.headers.get(HEADER, "").strip()
        scope = f"{key.id}\n{request.method} {request.url.path}\n{sent}"
        self.key = hashlib.sha256(scope.encode()).hexdigest() if sent else None

    def stored(self) -> Response | None:
        if self.key is None:
            return None
        found = self.tether.storage.get_reply(self.key)
        if found is None:
            return None
        return Response(found.body, status_code=found.status_code, media_type="application/json",
                        headers={REPLAYED: "true"})

    def answer(self, produce: Callable[[], BaseModel | dict[str, Any] | list[Any]],
               status_code: int = 200) -> Response:
        """The stored answer to this request's key, else `produce()`'s, stored under the key."""
        replay = self.stored()
        if replay is not None:
            return replay
        text = body_text(produce())
        if self.key is not None:
            now = time.time()
            kept = self.tether.storage.save_reply(StoredReply(self.key, status_code, text, now))
            text, status_code = kept.body, kept.status_code  # a racing twin answered first
            if _due_for_pruning(self.tether):
                self.tether.storage.prune_replies(now - KEEP_SECONDS)
        return Response(text, status_code=status_code, media_type="application/json")


def replies(request: Request, tether: TetherDep, key: ApiKeyDep) -> Replies:
    return Replies(tether, request, key)


ReplyDep = Annotated[Replies, Depends(replies)]
