"""`tether queues list|paused|pause-key|resume-key|keys`: queues and their keys."""

from __future__ import annotations

import dataclasses
import time

import click

from tether.cli.common import echo_json, iso, open_app
from tether.storage.queue_records import QueueRecord


@click.group()
def queues() -> None:
    """Queues: their limits, and their keys (a run's concurrency key) paused by back-pressure
    or by hand."""


@queues.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def queues_list(as_json: bool) -> None:
    """Every queue with its limits: concurrency (per key), total_concurrency (all keys), its
    rate limit (runs per period, with the burst), max_queued (runs waiting to start) and
    on_key_limit (what a trigger does for a full key).

    \b
    Example: tether queues list
    """
    found = open_app().queues.list()
    if as_json:
        echo_json([dataclasses.asdict(q) for q in found])
        return
    if not found:
        click.echo("No queues (they appear when a worker starts or a task is triggered).")
        return
    click.echo(f"{'QUEUE':<32} {'CONCURRENCY':>11} {'TOTAL':>6} {'RATE':<16} {'MAX QUEUED':>10}  "
               f"{'ON KEY LIMIT':<18} PAUSED")
    for q in found:
        click.echo(f"{q.name:<32} {_or_dash(q.concurrency):>11} {_or_dash(q.total_concurrency):>6} "
                   f"{_rate(q):<16} {_or_dash(q.max_queued):>10}  {q.on_key_limit:<18} "
                   f"{'yes' if q.paused else 'no'}")


def _rate(q: QueueRecord) -> str:
    """`100/60s` (runs per period), `+b5` for a burst over 1, `/key` per key: `-` for none."""
    if q.rate_limit is None or q.rate_period is None:
        return "-"
    burst = f"+b{q.rate_burst}" if q.rate_burst and q.rate_burst > 1 else ""
    per = "" if q.rate_scope in (None, "queue") else "/key"
    return f"{q.rate_limit:g}/{q.rate_period:g}s{burst}{per}"


@queues.command("paused")
@click.argument("queue", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def queues_paused(queue: str | None, as_json: bool) -> None:
    """The keys paused now (of QUEUE, or of every queue): no run of the key is claimed before
    its time. A key is paused by back-pressure (a task raising RetryAfter, an API answering 429
    with Retry-After) or by hand (`tether queues pause-key`).

    \b
    Examples:
      tether queues paused
      tether queues paused openai --json
    """
    found = open_app().queues.paused_keys(queue)
    if as_json:
        echo_json([dataclasses.asdict(p) for p in found])
        return
    if not found:
        click.echo("No paused keys." if queue is None else f"No paused keys in queue {queue!r}.")
        return
    now = time.time()
    click.echo(f"{'QUEUE':<24} {'KEY':<24} {'UNTIL':<25} {'LEFT':>7}  REASON")
    for p in found:
        left = max(0.0, p.until.timestamp() - now)
        click.echo(f"{p.queue:<24} {_key(p.key):<24} {iso(p.until):<25} {left:>6.0f}s  "
                   f"{p.reason or ''}")


@queues.command("pause-key")
@click.argument("queue")
@click.argument("key")
@click.option("--for", "for_", metavar="DURATION", help='How long: "30s", "10m", "2h".')
@click.option("--until", "until", metavar="TIME", help="Until when: ISO-8601 with a timezone.")
@click.option("--reason", default="paused by hand", show_default=True, help="Shown beside it.")
def queues_pause_key(queue: str, key: str, for_: str | None, until: str | None,
                     reason: str) -> None:
    """Pause KEY of QUEUE: none of its runs is claimed until then (runs executing go on). KEY
    is the runs' concurrency key; '' names the runs without one. A pause already longer is
    kept.

    \b
    Example: tether queues pause-key openai tenant-42 --for 10m
    """
    if (for_ is None) == (until is None):
        raise click.UsageError("give either --for DURATION or --until TIME")
    when = for_ if for_ is not None else until
    assert when is not None
    paused = open_app().queues.pause_key(queue, key, when, reason)
    click.echo(f"paused key {_key(paused.key)} of queue {paused.queue!r} until {iso(paused.until)}")


@queues.command("resume-key")
@click.argument("queue")
@click.argument("key")
def queues_resume_key(queue: str, key: str) -> None:
    """Resume KEY of QUEUE now: its runs may be claimed at once. KEY is the runs' concurrency
    key; '' names the runs without one.

    \b
    Example: tether queues resume-key openai tenant-42
    """
    if open_app().queues.resume_key(queue, key):
        click.echo(f"resumed key {_key(key)} of queue {queue!r}")
    else:
        click.echo(f"key {_key(key)} of queue {queue!r} was not paused")


@queues.command("keys")
@click.argument("queue")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000),
              help="How many keys.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def queues_keys(queue: str, limit: int, as_json: bool) -> None:
    """The keys of QUEUE with the most runs ready to start, with their executing runs.

    \b
    Example: tether queues keys openai --limit 5
    """
    found = open_app().queues.key_depths(queue, limit)
    if as_json:
        echo_json([dataclasses.asdict(d) for d in found])
        return
    if not found:
        click.echo(f"No runs queued or executing in queue {queue!r}.")
        return
    click.echo(f"{'KEY':<32} {'QUEUED':>8} {'EXECUTING':>9}")
    for d in found:
        click.echo(f"{_key(d.key):<32} {d.queued:>8} {d.executing:>9}")


def _key(key: str) -> str:
    return repr(key) if not key or key != key.strip() else key


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)
