"""`tether runs ...`: each command is a few lines around one `app.runs` call."""

from __future__ import annotations

from dataclasses import asdict

import click

from tether.cli.common import choice, echo_json, limit_option, open_app, say_if_more
from tether.cli.format import run_details, run_table
from tether.models import Run, RunStatus


@click.group()
def runs() -> None:
    """List, inspect, cancel, replay, fork and retry runs."""


@runs.command("list")
@click.option("--status", "statuses", multiple=True, type=choice(RunStatus),
              help="Only runs in this status (repeatable; any case).")
@click.option("--task", "tasks", multiple=True, metavar="TASK",
              help="Only runs of this task (repeatable).")
@click.option("--tag", "tags", multiple=True, metavar="TAG",
              help="Only runs with this tag (repeatable).")
@limit_option()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def runs_list(statuses: tuple[str, ...], tasks: tuple[str, ...], tags: tuple[str, ...],
              limit: int, as_json: bool) -> None:
    """Runs, newest first. When there are more than --limit, stderr says so.

    \b
    Example: tether runs list --status FAILED --limit 50
    """
    app = open_app()

    def newest(count: int, before: str | None = None) -> list[Run]:
        return app.runs.list(status=list(statuses) or None, task=list(tasks) or None,
                             tag=list(tags) or None, limit=count, before=before)

    found = newest(limit)
    more = len(found) == limit and bool(newest(1, before=found[-1].id))
    if as_json:
        echo_json([asdict(r) for r in found])
    else:
        click.echo("\n".join(run_table(found)))
    say_if_more(len(found), more, "runs", "--status, --task, --tag")


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the run and its trace as JSON.")
def runs_show(run_id: str, as_json: bool) -> None:
    """A run's details and timeline: attempts, steps with durations, errors, logs."""
    app = open_app()
    run, trace = app.runs.retrieve(run_id), app.runs.trace(run_id)
    if as_json:
        echo_json({"run": asdict(run), "trace": [asdict(e) for e in trace]})
    else:
        click.echo("\n".join(run_details(run, trace)))
        has_history = any(e.kind in ("step", "wait", "child") for e in trace)
        note = app.versions.pinned_note(run, has_history)
        if note:
            click.echo(f"Pinned    {note}")


@runs.command("cancel")
@click.argument("run_id")
def runs_cancel(run_id: str) -> None:
    """Cancel a run that has not finished (an executing one stops at its next await)."""
    click.echo(f"{run_id} {open_app().runs.cancel(run_id).status.value}")


@runs.command("replay")
@click.argument("run_id")
def runs_replay(run_id: str) -> None:
    """Start a new run with the same task, payload and options. Prints the new run's id."""
    click.echo(open_app().runs.replay(run_id).id)


@runs.command("retry")
@click.argument("run_id")
def runs_retry(run_id: str) -> None:
    """Give a FAILED run one more attempt that keeps its completed steps."""
    click.echo(f"{run_id} {open_app().runs.retry(run_id).status.value}")


@runs.command("fork")
@click.argument("run_id")
@click.option("--from-step", "from_step", required=True, metavar="NAME",
              help="The stored durable call to execute from (its name, or key: charge#2).")
def runs_fork(run_id: str, from_step: str) -> None:
    """Start a new run like `replay` that keeps the stored results of the durable calls before
    --from-step and executes from it on. Prints the new run's id.

    \b
    Example: tether runs fork run_01J... --from-step charge
    """
    click.echo(open_app().runs.fork(run_id, from_step=from_step).id)


@runs.command("purge")
@click.option("--older-than", "older_than", required=True, metavar="AGE",
              help="Delete runs that finished more than AGE ago: 30s, 5m, 12h, 7d, 2w.")
@click.option("--status", "statuses", multiple=True, type=choice(RunStatus),
              help="Only runs that ended in this status (repeatable; any case). Default: every "
                   "finished status (COMPLETED, FAILED, CANCELED, TIMED_OUT, EXPIRED).")
@click.option("--task", "tasks", multiple=True, metavar="TASK",
              help="Only runs of this task (repeatable).")
@click.option("--dry-run", "dry_run", is_flag=True,
              help="Count the runs that would be deleted; delete nothing.")
@click.option("--json", "as_json", is_flag=True, help='Print {"deleted": N, "dry_run": ...}.')
def runs_purge(older_than: str, statuses: tuple[str, ...], tasks: tuple[str, ...],
               dry_run: bool, as_json: bool) -> None:
    """Delete finished runs older than --older-than (counted from when they finished), with
    their attempts, steps, events, logs and tokens. Runs that have not finished are never
    deleted, nor the finished children of a parent that has not. Workers keep working
    meanwhile (a few thousand runs per short transaction). Their idempotency keys are free
    again. To do this continuously, set Tether(retention="30d").

    \b
    Example: tether runs purge --older-than 30d --status COMPLETED --dry-run
    """
    count = open_app().runs.purge(older_than=older_than, status=list(statuses) or None,
                                  task=list(tasks) or None, dry_run=dry_run)
    if as_json:
        echo_json({"deleted": 0 if dry_run else count, "matched": count, "dry_run": dry_run})
    elif dry_run:
        click.echo(f"{count} run(s) would be deleted (dry run: nothing deleted)")
    else:
        click.echo(f"deleted {count} run(s)")


@runs.command("migrate")
@click.argument("app_ref", metavar="APP")
@click.argument("run_ids", nargs=-1, metavar="[RUN ...]")
@click.option("--version", "from_version", metavar="OLD",
              help="Move the unfinished runs on this version (instead of naming runs).")
@click.option("--to-version", "to_version", metavar="NEW",
              help="The version to move them to. Default: APP's (Tether(version=...), "
                   "TETHER_VERSION, or the hash of its task sources).")
@click.option("--status", "statuses", multiple=True, type=choice(RunStatus),
              help="Only runs in this status (repeatable; any case). Default: DELAYED, QUEUED, "
                   "EXECUTING and WAITING.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def runs_migrate(app_ref: str, run_ids: tuple[str, ...], from_version: str | None,
                 to_version: str | None, statuses: tuple[str, ...], as_json: bool) -> None:
    """Move runs pinned to an old code version onto APP's, the code you deploy: each run's
    stored history is first replayed against APP (as `tether check` does); a run that passes is
    re-pinned, so workers of the new version go on with it; one that does not is refused with
    the reason and left as it was. Exits 1 if any run was refused.

    \b
    Example:
      tether runs migrate app.py --version v1 --to-version v2
      tether runs migrate app.py run_01J... run_01K...
    """
    from tether.loader import load_app

    app = load_app(app_ref)
    click.get_current_context().call_on_close(app.close)
    report = app.runs.migrate(list(run_ids) or None, from_version=from_version,
                              to_version=to_version, status=list(statuses) or None)
    if as_json:
        echo_json({"version": report.version, "moved": report.moved, "already": report.already,
                   "refused": [r.as_dict() for r in report.refused]})
    else:
        click.echo(report.summary())
        for run in report.refused:
            click.echo(f"{run.run_id}  {run.task}  {run.status}  refused: {run.detail}")
    if not report.passed:
        click.get_current_context().exit(1)
