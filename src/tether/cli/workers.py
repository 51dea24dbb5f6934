"""`tether workers list`: every worker, what it holds and its state."""

from __future__ import annotations

import dataclasses
import time

import click

from tether.cli.common import echo_json, open_app
from tether.workers import WorkerInfo


@click.group()
def workers() -> None:
    """Worker processes: where they run, what they hold, whether they are healthy."""


@workers.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--all", "show_all", is_flag=True,
              help="Every worker ever recorded (default: those seen in the last 24 hours); "
                   "at most 1,000, those seen last.")
def workers_list(as_json: bool, show_all: bool) -> None:
    """Workers seen in the last 24 hours, the newest first, with their state:

    \b
      live            heartbeating
      stalled         its event loop does not answer: an async task runs blocking code
                      (the worker's log has the stack; see `tether worker --stall-seconds`)
      idle-with-work  free places, but it claimed nothing for 5 s while runs of its tasks
                      were ready that long (a paused or full queue, a rate limit or a
                      paused key, which may rightly hold runs back, does not count)
      stopped         shut down cleanly
      gone            no heartbeat for max(60 s, 3 x lease) (TETHER_WORKERS_GONE_AFTER),
                      or its process no longer exists on this machine

    \b
    Example: tether workers list --json
    """
    found = open_app().workers.list(all=show_all)
    if as_json:
        echo_json([dataclasses.asdict(w) for w in found])
        return
    if not found:
        click.echo("No workers seen in the last 24 hours." if not show_all else "No workers.")
        return
    now = time.time()
    click.echo(f"{'WORKER':<34} {'STATE':<14} {'HOST:PID':<24} {'VERSION':<18} {'RUNNING':>7}  "
               f"{'STALLS':>6}  {'LAST SEEN':>9}  QUEUES")
    for w in found:
        click.echo(f"{w.id:<34} {w.state:<14} {_where(w):<24} {(w.version or '-'):<18} "
                   f"{f'{w.running}/{w.concurrency}':>7}  {w.stalls:>6}  "
                   f"{_ago(now - w.last_seen_at.timestamp()):>9}  {','.join(w.queues)}")


def _where(w: WorkerInfo) -> str:
    return f"{w.hostname}:{w.pid}"


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s ago"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m ago"
    if seconds < 86400:
        return f"{seconds // 3600:.0f}h ago"
    return f"{seconds // 86400:.0f}d ago"
