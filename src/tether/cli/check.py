"""`tether check APP`: replay the unfinished runs against APP's code before deploying it."""

from __future__ import annotations

import json

import click

from tether.cli.common import NO_DATABASE, CommandError, choice, configure_logging, settings
from tether.models import RunStatus
from tether.storage import sqlite_path


@click.command("check")
@click.argument("app_ref", metavar="APP")
@click.option("--task", metavar="TASK", help="Only runs of this task.")
@click.option("--status", "statuses", multiple=True, type=choice(RunStatus),
              help="Only runs in this status (repeatable; any case). Default: DELAYED, QUEUED, "
                   "EXECUTING and WAITING.")
@click.option("--include-failed", is_flag=True,
              help="Also check the runs `tether runs retry` could restart (FAILED, TIMED_OUT, "
                   "CANCELED).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object per run (run_id, task, status, verdict, detail); the "
                   "summary goes to stderr.")
def check(app_ref: str, task: str | None, statuses: tuple[str, ...], include_failed: bool,
          as_json: bool) -> None:
    """Check that the code of APP (module:attribute or path/to/app.py) can take over the runs
    in the database: run it against each unfinished run's stored history before deploying it.

    Each durable call (step, once, sleep, token, trigger) returns its stored result and the first
    one not stored ends that run's check. No step function is called and nothing is written or
    triggered; the task's code between durable calls does run. Each run is:

    \b
      ok            the new code reaches the stored calls in the stored order
      would fail    it calls something else at a stored position (a step renamed,
                    added or moved), or raises; the detail says where
      cannot check  its task is not in the code, or its payload no longer validates

    Exits 1 when any run would fail or cannot be checked (to gate a deploy), else 0.

    \b
    Example:
      tether check app.py --database postgresql://localhost/app
      tether check myapp.tasks:app --task build-report --json
    """
    from tether.loader import load_app

    if settings().log_level is not None:
        configure_logging()
    app = load_app(app_ref)
    click.get_current_context().call_on_close(app.close)
    path = sqlite_path(app.database_url)
    if path is not None and not path.exists():
        raise CommandError(NO_DATABASE.format(path=path))
    report = app.check_replay(task=task, status=list(statuses) or None,
                              include_failed=include_failed)
    if as_json:
        for run in report.runs:
            click.echo(json.dumps(run.as_dict()))
        click.echo(report.summary(), err=True)
    else:
        click.echo(report.summary())
        for run in report.problems:
            click.echo(f"{run.run_id}  {run.task}  {run.status}  {run.verdict.replace('_', ' ')}: "
                       f"{run.detail}")
    if not report.passed:
        click.get_current_context().exit(1)
