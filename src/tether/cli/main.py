"""The `tether` command. Each command is a few lines around one library call; what they share
(global options, one-line errors, opening the app) is in common.py."""

from __future__ import annotations

from typing import Any

import click

from tether.cli.check import check
from tether.cli.common import (
    TetherGroup,
    add_global_options,
    configure_logging,
    echo_json,
    global_options,
    open_app,
)
from tether.cli.keys import keys
from tether.cli.queues import queues
from tether.cli.rate_limits import rate_limits
from tether.cli.runs import runs
from tether.cli.schedules import schedules
from tether.cli.server import dev, serve
from tether.cli.tokens import tokens
from tether.cli.versions import versions
from tether.cli.workers import workers
from tether.errors import RunFailed
from tether.serialization import parse_payload_text


@click.group(cls=TetherGroup, params=global_options(root=True),
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tether", help="Show the version and exit.")
def cli() -> None:
    """Tether: durable background tasks for Python.

    \b
    Quick start:
      tether worker app.py                 # run the tasks defined in app.py
      tether trigger my-task '{"n": 1}' --wait
      tether runs list --status FAILED
      tether runs show RUN_ID

    \b
    --database, --log-level and --traceback may also follow the command's name:
      tether runs list --database postgresql://localhost/app
    """


@cli.command()
@click.argument("app_ref", metavar="APP")
@click.option("--concurrency", "-c", default=10, show_default=True, metavar="N",
              help="How many runs this process executes at once (attempts of tasks with "
                   "isolation='process' run in up to N child processes it keeps warm).")
@click.option("--queue", "-q", "queues", multiple=True, metavar="NAME",
              help="Serve only tasks in this queue (repeatable). Default: every queue.")
@click.option("--grace", default=30.0, show_default=True, metavar="SECONDS",
              help="Seconds to let running attempts finish after SIGTERM before handing them back.")
@click.option("--version", "version", default=None, metavar="VERSION",
              help="The code version this worker runs (overrides Tether(version=...) and "
                   "TETHER_VERSION; default: a hash of the app's task sources). Runs record "
                   "the version of the worker that first executes them.")
@click.option("--stall-seconds", default=1.0, show_default=True, metavar="SECONDS",
              type=click.FloatRange(min=0),
              help="Warn (with the blocking code's stack) when an async task holds the event "
                   "loop this long; the worker shows as stalled meanwhile. 0 turns it off.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None, metavar="PORT",
              help="Serve Prometheus metrics at http://HOST:PORT/metrics (0: any free port, "
                   "logged). Default: no metrics endpoint.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, metavar="HOST",
              help="The address the metrics endpoint listens on (it has no authentication: "
                   "open it wider only on a network you trust, e.g. 0.0.0.0 in a container).")
def worker(app_ref: str, concurrency: int, queues: tuple[str, ...], grace: float,
           version: str | None, stall_seconds: float, metrics_port: int | None,
           metrics_host: str) -> None:
    """Run the tasks of APP (module:attribute or path/to/app.py) until SIGTERM or Ctrl-C.

    Metrics: with OTEL_METRICS_EXPORTER=otlp (or an OTEL_EXPORTER_OTLP_ENDPOINT) and the `otel` extra,
    the same metrics are exported over OTLP too.
    Traces: with OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_TRACES_EXPORTER=otlp) set and the otel
    extra installed, spans are exported over OTLP/HTTP, unless APP installs a TracerProvider.
    Either way, log lines of records emitted in a run then name its trace and span ids.

    \b
    Example:
      tether worker app.py --concurrency 20 --queue emails
      tether worker app.py --metrics-port 9464
      OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 tether worker app.py
    """
    from tether.loader import load_app
    from tether.observe.otel_metrics import configure_from_env
    from tether.observe.otlp import configure
    from tether.observe.tracing import log_lines_name_ids
    from tether.worker.worker import Worker

    configure_logging("info")
    app = load_app(app_ref)
    if version is not None:
        app.version = version
    flush = configure("tether-worker")  # after the app's import: its own provider comes first
    configure_from_env("tether-worker")
    log_lines_name_ids()
    try:
        Worker(app, concurrency=concurrency, queues=list(queues) or None, shutdown_grace=grace,
               stall_seconds=stall_seconds, metrics_port=metrics_port,
               metrics_host=metrics_host).run_forever()
    finally:
        if flush is not None:
            flush()


@cli.command()
@click.argument("task")
@click.argument("payload", required=False, default="null")
@click.option("--wait", is_flag=True, help="Wait for the run to finish and print its output.")
@click.option("--timeout", type=float, default=None, metavar="SECONDS",
              help="With --wait: give up after SECONDS.")
@click.option("--idempotency-key", metavar="KEY",
              help="A second trigger with the same key returns the first run.")
@click.option("--delay", metavar="WHEN",
              help="Start later: '30s', '5m', '2h' or an ISO date with a timezone.")
@click.option("--ttl", metavar="DURATION",
              help="Expire the run if it has not started within this long ('10m', '1h').")
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="Tag the run (repeatable).")
@click.option("--concurrency-key", metavar="KEY", help="Apply the queue's limit per this key.")
@click.option("--priority", type=int, default=0, metavar="N",
              help="Higher starts first within its queue.")
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
    handle = open_app(create=True).trigger(task, value, **options)
    if not wait:
        click.echo(handle.id + ("  (existing run: idempotency key matched)" if handle.is_cached
                                else ""))
        return
    click.echo(handle.id, err=True)
    try:
        echo_json(handle.result(timeout=timeout))
    except RunFailed as exc:
        raise click.ClickException(failure(exc)) from None
    except TimeoutError as exc:
        raise click.ClickException(str(exc)) from None


def failure(exc: RunFailed) -> str:
    """How a run ended, its error as `runs show` writes it: `KeyError: 'timestamp'`."""
    return str(exc)


@cli.group()
def tasks() -> None:
    """Tasks that workers have registered."""


@tasks.command("list")
def tasks_list() -> None:
    """Every task a worker has registered, with its queue and code version."""
    for record in open_app().storage.list_tasks():
        click.echo(f"{record.id:<32} queue={record.queue:<20} version={record.code_version}")


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create the database if it does not exist and apply pending migrations (commands that
    write apply them on first use too)."""
    applied = open_app(create=True).storage.migrate()
    click.echo("applied: " + ", ".join(applied) if applied else "schema is up to date")


cli.add_command(check)
cli.add_command(runs)
cli.add_command(schedules)
cli.add_command(tokens)
cli.add_command(keys)
cli.add_command(rate_limits)
cli.add_command(versions)
cli.add_command(workers)
cli.add_command(queues)
cli.add_command(serve)
cli.add_command(dev)
add_global_options(cli)


def main() -> None:
    """The installed `tether` script: errors are one line (TetherGroup), Ctrl-C exits 130."""
    try:
        cli.main()
    except KeyboardInterrupt:
        raise SystemExit(130) from None
