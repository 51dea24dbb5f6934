"""`app.tokens`: waitpoint tokens for human-in-the-loop waits. The CLI (and the HTTP API) call
these same methods; a run creates and waits for tokens with `ctx.create_token` and
`ctx.wait_for_token`."""

from __future__ import annotations

import builtins
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from tether.durations import Duration, seconds
from tether.engine.triggering import tag_list
from tether.engine.waits import new_token
from tether.errors import ConfigurationError, TokenNotFound, TokenRunEnded, TokenTimedOut
from tether.models import RunStatus, Token, TokenStatus, to_datetime
from tether.runs import page_limit
from tether.serialization import dumps_input, loads
from tether.storage.records import RunFilter, TokenRecord

if TYPE_CHECKING:
    from tether.app import Tether


def to_token(record: TokenRecord, now: float) -> Token:
    status = TokenStatus(record.status)
    if status == TokenStatus.WAITING and record.timeout_at is not None and record.timeout_at <= now:
        status = TokenStatus.TIMED_OUT  # not marked yet: nobody looked since it timed out
    return Token(id=record.id, status=status, output=loads(record.output),
                 timeout_at=to_datetime(record.timeout_at),
                 created_at=to_datetime(record.created_at),  # type: ignore[arg-type]
                 completed_at=to_datetime(record.completed_at), run_id=record.run_id,
                 idempotency_key=record.idempotency_key, tags=loads(record.tags))


class Tokens:
    """`app.tokens`: create, read and complete waitpoint tokens."""

    def __init__(self, app: Tether) -> None:
        self._app = app

    def create(self, *, timeout: Duration | None = None, idempotency_key: str | None = None,
               tags: str | list[str] | None = None,
               idempotency_key_ttl: Duration | None = None) -> Token:
        """A token outside any run (its id can be handed to a run in a payload). A token made
        with the same `idempotency_key` before is returned instead, until its
        `idempotency_key_ttl` (if it was given one) passed; then a new token is made."""
        now = self._app.clock.now()
        timeout_at = None if timeout is None else now + seconds(timeout, "timeout")
        ttl = None if idempotency_key_ttl is None else seconds(idempotency_key_ttl,
                                                                "idempotency_key_ttl")
        record, _ = self._app.storage.create_token(
            new_token(None, now, timeout_at, idempotency_key, tag_list(tags), ttl))
        return to_token(record, now)

    def retrieve(self, token_id: str) -> Token:
        """The token with this id; TokenNotFound if there is none."""
        record = self._app.storage.get_token(token_id)
        if record is None:
            raise TokenNotFound(token_id)
        return self._with_runs([to_token(record, self._app.clock.now())])[0]

    def _with_runs(self, tokens: builtins.list[Token]) -> builtins.list[Token]:
        """Mark the WAITING tokens whose creating run has ended (one read for all)."""
        ids = sorted({t.run_id for t in tokens if t.run_id and t.status == TokenStatus.WAITING})
        if not ids:
            return tokens
        ended = {r.id: RunStatus(r.status) for r in self._app.storage.get_runs(ids)
                 if RunStatus(r.status).is_final}
        return [replace(t, run_ended=ended[t.run_id]) if t.run_id in ended else t
                for t in tokens]

    def _check_pending(self, token_id: str) -> None:
        """TokenRunEnded if nothing waits for the token any more: its run ended, no other run
        waits for it (completing it would resume nothing)."""
        storage = self._app.storage
        record = storage.get_token(token_id)
        if record is None or record.status != TokenStatus.WAITING or record.run_id is None:
            return
        run = storage.get_run(record.run_id)
        if run is None or not RunStatus(run.status).is_final:
            return
        if storage.list_runs(RunFilter(status=[RunStatus.WAITING.value], waiting_for=token_id,
                                       limit=1)) or storage.gather_waits_for(token_id):
            return  # another run waits for it (alone, or among several waits at once)
        raise TokenRunEnded(token_id, run.id, run.status)

    def list(self, *, status: str | builtins.list[str] | None = None,
             limit: int = 25, before: str | None = None) -> builtins.list[Token]:
        """Tokens, newest first. `status`: WAITING, COMPLETED or TIMED_OUT."""
        statuses = None
        if status is not None:
            given = [status] if isinstance(status, str) else status
            try:
                statuses = [TokenStatus(s.upper()).value for s in given]
            except ValueError:
                raise ConfigurationError(
                    f"token status must be WAITING, COMPLETED or TIMED_OUT, got {status!r}") from None
        now = self._app.clock.now()
        records = self._app.storage.list_tokens(statuses, page_limit(limit), before)
        tokens = [to_token(r, now) for r in records]
        if statuses is not None:  # a WAITING row past its timeout is reported TIMED_OUT
            tokens = [t for t in tokens if t.status in statuses]
        return self._with_runs(tokens)

    def complete(self, token_id: str, data: Any = None) -> Token:
        """Complete a token: the run waiting for it resumes with `data`. Completing it again is
        harmless (the first data stays); an unknown or timed-out token is an error."""
        output = dumps_input(data, "token data", self._app.max_payload_size, self._app.objects,
                             token_id)
        self._check_pending(token_id)
        now = self._app.clock.now()
        record, _ = self._app.storage.complete_token(token_id, output, now)
        if record is None:
            raise TokenNotFound(token_id)
        if record.status == TokenStatus.WAITING:  # not completed: its timeout passed
            record = self._app.storage.time_out_token(token_id, now) or record
        if record.status == TokenStatus.TIMED_OUT:
            raise TokenTimedOut(token_id)
        return to_token(record, now)
