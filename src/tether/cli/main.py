"""The `tether` command. Each command is a few lines around one library call."""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import asdict
from typing import Any

import click

from tether.app import Tether
from tether.cli.format import run_details, run_table
from tether.cli.keys import keys
from tether.cli.schedules import schedules
from tether.cli.server import dev, serve
from tether.cli.tokens import tokens
from tether.errors import RunFailed, TetherError
from tether.serialization import parse_payload_text


def _app() -> Tether:
    return Tether()


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--database", envvar="TETHER_DATABASE_URL", metavar="URL",
              help="Where runs are stored (env TETHER_DATABASE_URL). "
                   "Default: sqlite:///.tether/tether.db")
@click.version_option(package_name="tether")
def cli(database: str | None) -> None:
    """Tether: durable background tasks for Python.

    \b
    Quick start:
      tether worker app.py                 # run the tasks defined in app.py
      tether trigger my-task '{"n": 1}' --wait
      tether runs list --status FAILED
      tether runs show RUN_ID
    """
    if database:
        os.environ["TETHER_DATABASE_URL"] = database


@cli.command()
@click.argument("app_ref", metavar="APP")
@click.option("--concurrency", "-c", default=10, show_default=True,
              help="How many runs this process executes at once.")
@click.option("--queue", "-q", "queues", multiple=True,
              help="Serve only tasks in this queue (repeatable). Default: every queue.")
@click.option("--grace", default=30.0, show_default=True,
              help="Seconds to let running attempts finish after SIGTERM before handing them back.")
@click.option("--log-level", default="INFO", show_default=True)
def worker(app_ref: str, concurrency: int, queues: tuple[str, ...], grace: float,
           log_level: str) -> None:
    """Run the tasks of APP (module:attribute or path/to/app.py) until SIGTERM or Ctrl-C.

    \b
    Example:
      tether worker app.py --concurrency 20 --queue emails
    """
    from tether.loader import load_app
    from tether.worker.worker import Worker

    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = load_app(app_ref)
    Worker(app, concurrency=concurrency, queues=list(queues) or None,
           shutdown_grace=grace).run_forever()


@cli.command()
@click.argument("task")
@click.argument("payload", required=False, default="null")
@click.option("--wait", is_flag=True, help="Wait for the run to finish and print its output.")
@click.option("--timeout", type=float, default=None, help="With --wait: give up after SECONDS.")
@click.option("--idempotency-key", help="A second trigger with the same key returns the first run.")
@click.option("--delay", help="Start later: '30s', '5m', '2h' or an ISO date with a timezone.")
@click.option("--ttl", help="Expire the run if it has not started within this long.")
@click.option("--tag", "tags", multiple=True, help="Tag the run (repeatable).")
@click.option("--concurrency-key", help="Apply the queue's limit per this key.")
@click.option("--priority", type=int, default=0, help="Higher starts first within its queue.")
def trigger(task: str, payload: str, wait: bool, timeout: float | None,
            idempotency_key: str | None, delay: str | None, ttl: str | None,
            tags: tuple[str, ...], concurrency_key: str | None, priority: int) -> None:
    """Trigger TASK with PAYLOAD (JSON; default null). Prints the run id.

    \b
    Example:
      tether trigger send-report '{"day": "2026-11-21"}' --tag team:ops --wait
    """
    value = parse_payload_text(payload)
    options: dict[str, Any] = {"tags": list(tags), "priority": priority}
    for name, opt in (("idempotency_key", idempotency_key), ("delay", delay), ("ttl", ttl),
                      ("concurrency_key", concurrency_key)):
        if opt is not None:
            options[name] = opt
    handle = _app().trigger(task, value, **options)
    if not wait:
        click.echo(handle.id + ("  (existing run: idempotency key matched)" if handle.is_cached
                                else ""))
        return
    click.echo(handle.id, err=True)
    try:
        _echo_json(handle.result(timeout=timeout))
    except RunFailed as exc:
        raise click.ClickException(str(exc)) from None
    except TimeoutError as exc:
        raise click.ClickException(str(exc)) from None


@cli.group()
def runs() -> None:
    """List, inspect, cancel, replay and retry runs."""


@runs.command("list")
@click.option("--status", "statuses", multiple=True, help="QUEUED, EXECUTING, FAILED, ... (repeatable)")
@click.option("--task", "tasks", multiple=True, help="Only runs of this task (repeatable).")
@click.option("--tag", "tags", multiple=True, help="Only runs with this tag (repeatable).")
@click.option("--limit", default=25, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def runs_list(statuses: tuple[str, ...], tasks: tuple[str, ...], tags: tuple[str, ...],
              limit: int, as_json: bool) -> None:
    """Runs, newest first.  Example: tether runs list --status FAILED --limit 50"""
    found = _app().runs.list(status=list(statuses) or None, task=list(tasks) or None,
                             tag=list(tags) or None, limit=limit)
    if as_json:
        _echo_json([asdict(r) for r in found])
    else:
        click.echo("\n".join(run_table(found)))


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the run and its trace as JSON.")
def runs_show(run_id: str, as_json: bool) -> None:
    """A run's details and timeline: attempts, steps with durations, errors, logs."""
    app = _app()
    run, trace = app.runs.retrieve(run_id), app.runs.trace(run_id)
    if as_json:
        _echo_json({"run": asdict(run), "trace": [asdict(e) for e in trace]})
    else:
        click.echo("\n".join(run_details(run, trace)))


@runs.command("cancel")
@click.argument("run_id")
def runs_cancel(run_id: str) -> None:
    """Cancel a run that has not finished (an executing one stops at its next await)."""
    click.echo(f"{run_id} {_app().runs.cancel(run_id).status.value}")


@runs.command("replay")
@click.argument("run_id")
def runs_replay(run_id: str) -> None:
    """Start a new run with the same task, payload and options. Prints the new run's id."""
    click.echo(_app().runs.replay(run_id).id)


@runs.command("retry")
@click.argument("run_id")
def runs_retry(run_id: str) -> None:
    """Give a FAILED run one more attempt that keeps its completed steps."""
    click.echo(f"{run_id} {_app().runs.retry(run_id).status.value}")


@cli.group()
def tasks() -> None:
    """Tasks that workers have registered."""


@tasks.command("list")
def tasks_list() -> None:
    """Every task a worker has registered, with its queue and code version."""
    for record in _app().storage.list_tasks():
        click.echo(f"{record.id:<32} queue={record.queue:<20} version={record.code_version}")


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations (also done automatically on first use)."""
    applied = _app().storage.migrate()
    click.echo("applied: " + ", ".join(applied) if applied else "schema is up to date")


cli.add_command(schedules)
cli.add_command(tokens)
cli.add_command(keys)
cli.add_command(serve)
cli.add_command(dev)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except TetherError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except ValueError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
