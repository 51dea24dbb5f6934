"""The storage interface, in Tether's own words. Every backend implements it; one contract test
suite (tests/storage) proves each one.

Methods are synchronous: SQLite is, and a worker calls them from its event loop where each takes
microseconds. Writes that belong to a running attempt take its `Lease` and raise `LeaseLost` when
the worker no longer owns the run (fencing).
"""

from __future__ import annotations

from typing import Protocol

from tether.clock import Clock
from tether.engine.states import Transition
from tether.storage.base_server import ServerStorage
from tether.storage.offers import Offer
from tether.storage.pipeline import StepPipeline
from tether.storage.queue_records import KeyDepth, PausedKeyRecord, QueueRecord
from tether.storage.rates import LimitRecord, Take
from tether.storage.records import (
    AttemptRecord,
    ClaimedRun,
    ClaimRequest,
    EventRecord,
    Finish,
    Flush,
    Fork,
    Lease,
    NewRun,
    RunFilter,
    RunRecord,
    StepRecord,
    TaskRecord,
    TokenRecord,
    WaitPart,
    WorkerBeat,
    WorkerRecord,
)
from tether.storage.retention import SCAN_ROWS, PurgeBatch, PurgeRule
from tether.storage.schedules import ScheduleRecord, SlotClaim
from tether.wakeup import Bus


class Storage(ServerStorage, Protocol):
    url: str
    bus: Bus
    io_bound: bool  # calls wait on a network round trip: an event loop runs them in a thread
    # the app's clock (set by the app), for times a store reads itself inside a transaction
    # (SQLite's claims read it once they hold the write lock, so stored times follow the order
    # of commits); None: times come only from the callers
    clock: Clock | None
    # writes step rows of running attempts behind their back (PostgreSQL); None: save_step is
    # called and returns once the row is stored (SQLite)
    pipeline: StepPipeline | None
    offers: bool  # a trigger can take an idle worker's offer (storage/offers.py; PostgreSQL)

    # -- schema -------------------------------------------------------------------------------
    def migrate(self) -> list[str]:
        """Apply pending migrations; return the names applied. Safe to call concurrently."""
        ...

    def close(self) -> None: ...

    def pending_migrations(self) -> list[str]:
        """The names of this code's migrations the database lacks; reads only (a check that must
        write nothing calls it before any other method, which would apply them)."""
        ...

    # -- tasks, queues, workers ------------------------------------------------------------------
    def register_tasks(self, tasks: list[TaskRecord], queues: list[QueueRecord]) -> None: ...

    def get_task(self, task_id: str) -> TaskRecord | None: ...

    def list_tasks(self) -> list[TaskRecord]: ...

    def ensure_queues(self, queues: list[QueueRecord], now: float) -> None:
        """Create queues that do not exist yet and update their concurrency limit."""
        ...

    def list_queues(self) -> list[QueueRecord]: ...

    def set_queue_paused(self, name: str, paused: bool, now: float) -> bool: ...

    # -- a queue's keys (flow control, issue 22: storage/*/queue_keys.py) -------------------------
    def list_paused_keys(self, queue: str | None, now: float) -> list[PausedKeyRecord]:
        """Keys paused past `now` (of one queue, or all), by queue and key."""
        ...

    def resume_key(self, queue: str, key: str) -> bool:
        """End a key's pause now (the workers are woken); False when it was not paused."""
        ...

    def key_depths(self, queue: str, limit: int) -> list[KeyDepth]:
        """The queue's keys with the most runs ready (QUEUED), with their executing counts."""
        ...

    def active_key_runs(self, queue: str, key: str) -> list[str]:
        """The ids of the key's runs QUEUED or EXECUTING, newest first."""
        ...

    def register_worker(self, worker: WorkerRecord) -> None: ...

    def stop_worker(self, worker_id: str, now: float) -> None: ...

    def list_workers(self, alive_since: float) -> list[WorkerRecord]:
        """Workers not stopped that heartbeated at or after `alive_since`, oldest first."""
        ...

    def workers_seen(self, since: float | None, limit: int) -> list[WorkerRecord]:
        """The `limit` workers seen last, of those seen at or after `since` (all when None),
        stopped ones too, the one seen last first (live workers come before the others)."""
        ...

    def mark_stalled(self, worker_id: str, stalled_since: float | None, stalls: int) -> None:
        """Record at once that the worker's event loop stopped answering (`stalled_since`) or
        answers again (None), and its count of stalls."""
        ...

    def ready_since(self, before: float) -> list[tuple[str, str, float]]:
        """(task id, queue, oldest available_at) of QUEUED runs available at or before
        `before`: runs a worker with free places should have claimed."""
        ...

    def repin_runs(self, runs: list[tuple[str, str | None]], version: str) -> list[str]:
        """Set the version of each (run id, version it had when read) to `version`, only where
        it still has the version read; returns the ids changed."""
        ...

    def version_counts(self) -> list[tuple[str | None, str, int]]:
        """(version, status, count) of the unfinished runs (QUEUED, DELAYED, EXECUTING,
        WAITING); version None for runs no worker has started."""
        ...

    # -- runs ---------------------------------------------------------------------------------
    def create_runs(self, runs: list[NewRun], now: float) -> list[tuple[RunRecord, bool]]:
        """Store new runs in one transaction. For a run with an idempotency key that matches a
        live key of the same task, return the existing run and False instead of creating one.
        A key is live within its TTL unless its run ended FAILED, TIMED_OUT or EXPIRED
        (`records.key_holds`, Trigger.dev's rule): such a key is released and a new run made.
        The same holds in create_child_runs and add_batch_runs. Wakes the workers once the runs
        are committed."""
        ...

    def create_child_runs(self, lease: Lease, step: StepRecord, runs: list[NewRun],
                          now: float) -> list[tuple[RunRecord, bool]]:
        """Store a running parent's child runs and its step row, whose output becomes
        `{"runs": [ids]}`, in one transaction fenced by the parent's lease: a replayed parent
        finds the row and never triggers the children twice."""
        ...

    def create_fork(self, fork: Fork, now: float) -> tuple[RunRecord, int]:
        """Store the fork's new run, a copy of its source's step rows with a position below
        `fork.before_seq` (positions kept) and its FORKED event, in one transaction; the new
        run and how many rows were copied. Wakes the workers once committed."""
        ...

    def get_run(self, run_id: str) -> RunRecord | None: ...

    def get_runs(self, run_ids: list[str]) -> list[RunRecord]:
        """The runs with these ids that exist, in the order given."""
        ...

    def list_runs(self, flt: RunFilter) -> list[RunRecord]: ...

    def transition(
        self, run_id: str, transition: Transition, now: float, expect: str | None = None
    ) -> RunRecord | None:
        """Apply a transition to a run not held by a lease (cancel, expire, reopen, reschedule).

        Applies only if the run's status is one of the transition's sources (and equals `expect`
        if given). Returns the updated run, or None if it did not apply. Canceling an executing
        run clears its lease, which fences its worker out. Sends the wake-ups of
        `wakeup.after_transition` (as do expire_runs and promote_delayed).
        """
        ...

    # -- the worker's side --------------------------------------------------------------------
    def claim_runs(
        self,
        worker_id: str,
        task_ids: list[str],
        queues: list[str] | None,
        limit: int,
        now: float,
        lease_seconds: float,
        version: str | None = None,
        unpinned: list[str] | None = None,
    ) -> list[ClaimedRun]:
        """Atomically move up to `limit` ready runs to EXECUTING for this worker, highest priority
        first, never exceeding a queue's concurrency limit (per concurrency key). A run claimed
        for the first time records `version`, the worker's code version; with a `version`, a run
        with durable history and another version is left for its own version's workers, unless
        its task is one of `unpinned`."""
        ...

    def next_ready_at(self, task_ids: list[str], queues: list[str] | None, now: float) -> float | None:
        """When the next not-yet-ready run of these tasks becomes ready, if any."""
        ...

    def load_steps(self, run_id: str) -> dict[str, StepRecord]: ...

    def load_steps_many(self, run_ids: list[str]) -> dict[str, dict[str, StepRecord]]:
        """The steps of many runs in one read, by run id then key; a run without steps (or
        unknown) has no entry."""
        ...

    def save_step(self, lease: Lease, step: StepRecord, flush: Flush | None = None) -> None: ...

    def save_state(self, lease: Lease, state: str, flush: Flush | None = None) -> None: ...

    def flush(self, lease: Lease, flush: Flush) -> None: ...

    def finish_attempts(self, items: list[Finish], now: float, claim_next: ClaimRequest | None = None,
                        offer: Offer | None = None
                        ) -> tuple[list[RunRecord | None], list[ClaimedRun]]:
        """Close attempts and apply their transitions, all in one transaction (a worker groups
        the attempts that end together), then claim runs for the freed slots in the same
        transaction when `claim_next` says so. An item whose lease was lost gives None.
        Wakes callers waiting for runs that reached a final status, and the workers when a run
        went back to the queue or freed a slot of a limited queue.
        `claim_next.standby` asks for runs held in line (returned with `standby=True`, leased
        but without a slot); a storage may grant none. An item's `successor` (a run this worker
        held in line) takes over the slot the item frees if it still holds its lease and does
        not end in the same call."""
        ...

    def make_offer(self, offer: Offer, previous: list[str] | None = None) -> list[RunRecord]:
        """Store this worker's offer, replacing its earlier one (only where `offers`); return
        the runs that took its `previous` offers (tokens), whose messages may have been lost."""
        ...

    def withdraw_offer(self, worker_id: str, tokens: list[str]) -> list[RunRecord]:
        """Drop the worker's offer; the runs that took its offers `tokens` before, if any."""
        ...

    def renew_leases(self, worker_id: str, run_ids: list[str], now: float,
                     lease_seconds: float, beat: WorkerBeat | None = None) -> set[str]:
        """Extend the leases of the runs this worker executes (`run_ids`); return those it still
        holds. A run claimed for this worker that it does not know of (the answer to the claim
        was lost) is not renewed: its lease runs out and it is retried. The worker's row is
        seen at `now`, and with a `beat` (the heartbeat's) its state is written in the same
        statement."""
        ...

    def expired_leases(self, now: float, dead_workers: list[str]) -> list[RunRecord]:
        """Executing runs whose lease ran out, or whose worker is known to be dead."""
        ...

    def expire_runs(self, now: float) -> list[str]:
        """Move runs whose ttl passed before they started to EXPIRED; return their ids."""
        ...

    def promote_delayed(self, now: float) -> int:
        """Queue DELAYED runs whose delay passed and WAITING runs whose wake time came (a sleep
        that is over, whose sleep row is marked COMPLETED, or a token wait that timed out).
        Returns how many moved."""
        ...

    def park_gather(self, lease: Lease, wait: str, parts: list[WaitPart],
                    steps: list[StepRecord], now: float) -> float | None:
        """Before a run parks on several waits at once (its `waiting_for` will be `wait`), in one
        transaction fenced by the lease (LeaseLost): store the waits' rows, forget the parts of
        the run's earlier gathers, and store each part that is not over already (a token
        completed or timed out, every child of a group ended). Returns when the gather is over
        by time, the wake time to park with: the latest due_at of the parts stored (NEVER while
        one has none); None if none was stored (all over: park until now). A token completed
        or a group ended later deletes its part and settles the run (its wake time recomputed,
        queued once no undue part is left) in its own transaction; one that comes before the
        run is WAITING is seen by the commit that parks it (SQLite), or left to resolve_waits
        (PostgreSQL: that commit computed from what it saw before)."""
        ...

    def gather_waits_for(self, part: str) -> bool:
        """Whether a WAITING run's gather still waits for `part` (a token id, a child group)."""
        ...

    def resolve_waits(self, now: float) -> int:
        """Queue WAITING runs whose token was completed or whose child runs all ended but that
        are still parked, and settle the gathers whose parts are over but still stored (a
        safety net: completing a token or ending the last child queues the waiting run in the
        same transaction already)."""
        ...

    # -- tokens -------------------------------------------------------------------------------
    def create_token(self, token: TokenRecord, lease: Lease | None = None,
                     step: StepRecord | None = None) -> tuple[TokenRecord, bool]:
        """Store a token (or return the one with the same idempotency key, and False); with a
        lease, also the step row of the run that created it, in the same transaction. A key
        whose `idempotency_expires_at` is at or before the new token's `created_at` is released
        first (its token keeps the key, no longer active), so a new token is made."""
        ...

    def get_token(self, token_id: str) -> TokenRecord | None: ...

    def list_tokens(self, status: list[str] | None, limit: int, before_id: str | None = None,
                    after_id: str | None = None) -> list[TokenRecord]:
        """Tokens newest first, older than `before_id` if given; with `after_id`, the tokens
        newer than it, oldest first (a page backwards)."""
        ...

    def complete_token(self, token_id: str, output: str, now: float
                       ) -> tuple[TokenRecord | None, bool]:
        """Complete a WAITING token that has not timed out and queue the runs waiting for it,
        in one transaction. Returns the token as stored (None if unknown) and whether this call
        completed it."""
        ...

    def time_out_token(self, token_id: str, now: float) -> TokenRecord | None:
        """Mark a WAITING token whose timeout passed as TIMED_OUT; returns it as stored."""
        ...

    def upkeep(self) -> None:
        """Backend-specific periodic upkeep, called by each worker about once a second."""
        ...

    # -- reading a run's history --------------------------------------------------------------
    def list_attempts(self, run_id: str) -> list[AttemptRecord]: ...

    def list_events(self, run_id: str) -> list[EventRecord]: ...

    def reset_once_steps(self, run_id: str) -> list[str]:
        """Forget `once` steps that started but never finished (a person chose to retry)."""
        ...

    # -- schedules (storage/schedules.py has the records) -------------------------------------
    def save_schedule(self, schedule: ScheduleRecord) -> tuple[ScheduleRecord, bool]:
        """Insert, or update the schedule with the same deduplication key, keeping its next slot
        unless the cron or timezone changed. True when a new schedule was created."""
        ...

    def get_schedule(self, schedule_id: str) -> ScheduleRecord | None: ...

    def list_schedules(self) -> list[ScheduleRecord]: ...

    def delete_schedule(self, schedule_id: str) -> bool: ...

    def set_schedule_active(self, schedule_id: str, active: bool, next_run_at: float | None,
                            now: float) -> ScheduleRecord | None: ...

    def due_schedules(self, now: float, limit: int) -> list[ScheduleRecord]:
        """Active schedules whose next slot is at or before `now`, earliest first."""
        ...

    def fire_schedule(self, claim: SlotClaim) -> bool:
        """Move the schedule past its due slot and store the claim's run, in one transaction,
        only if its next slot is still `claim.due_at`. False when another firer got there first."""
        ...

    def retire_declared(self, keep: list[str], now: float) -> list[str]:
        """Deactivate declared schedules whose deduplication key is not in `keep` (no longer in
        the code); they stop counting as declared. Returns their ids."""
        ...

    # -- retention (storage/retention.py) -----------------------------------------------------
    def purge_runs(self, rule: PurgeRule, after: str = "", limit: int = SCAN_ROWS,
                   dry_run: bool = False) -> PurgeBatch:
        """One short transaction: look at up to `limit` runs after the id `after` (id order)
        and delete those `rule` matches, with their attempts, steps, events, tags, tokens,
        batch items, owed hooks and the stored HTTP replies naming them; a finished child of
        a parent that has not finished is kept. The batch lists the runs deleted (dry run: that
        would be) — the hook for deleting what they name elsewhere — and where to go on."""
        ...

    def has_work(self) -> bool:
        """Whether a run executes or waits in a queue to start now (status EXECUTING or QUEUED):
        one probe of an index. Retention paces itself by it (retention.Pacing)."""
        ...

    def purge_due(self, rule: PurgeRule, now: float, pass_every: float,
                  limit: int = SCAN_ROWS) -> PurgeBatch | None:
        """The workers' purge: `purge_runs` from the walk's place kept in the database (shared
        by every worker, moved in the same transaction; one worker at a time); a walk that
        reached the end starts again `pass_every` seconds later. None when there was nothing
        to do (no pass due, or another worker is purging)."""
        ...

    # -- flow control: named rate limits, paused keys ---------------------------------------
    def set_rate_limit(self, limit: LimitRecord) -> None:
        """Create or replace a named limit (its bucket's state is kept)."""
        ...

    def get_rate_limit(self, name: str) -> LimitRecord | None: ...

    def list_rate_limits(self) -> list[LimitRecord]:
        """Every named limit, by name."""
        ...

    def delete_rate_limit(self, name: str) -> bool:
        """Delete a named limit and its bucket; False when there was none."""
        ...

    def take_rate(self, name: str, weight: float, now: float, max_wait: float) -> Take:
        """Take `weight` units from the named limit's bucket, atomically across all workers: at
        once, or reserved for a moment at most `max_wait` seconds away; otherwise nothing is
        taken and the answer says when to try again. UnknownRateLimit for a name without a
        limit; ConfigurationError for a weight over the limit's burst (it could never fit)."""
        ...

    def pause_key(self, queue: str, key: str, until: float, reason: str | None,
                  now: float) -> None:
        """No run of `queue` whose key (coalesce(rate_key, concurrency_key)) is `key` is claimed
        before `until`, by any claim (a pause already longer stands); wakes the workers, whose
        next wake-up then includes its end. Deletes the pauses that ended."""
        ...
