"""`tether schedules ...`: each command is a few lines around one `app.schedules` call."""

from __future__ import annotations

from dataclasses import asdict

import click

from tether.cli.common import echo_json, open_app
from tether.schedules import Schedule


def schedule_table(found: list[Schedule]) -> list[str]:
    """One line per schedule; its next three slots in its own timezone (inactive: none)."""
    lines = [f"{'ID':<32} {'TASK':<24} {'CRON':<16} {'TIMEZONE':<18} {'ACTIVE':<6}  NEXT RUNS"]
    for s in found:
        upcoming = [d.strftime("%Y-%m-%d %H:%M %Z") for d in s.upcoming(3)] if s.active else []
        lines.append(f"{s.id:<32} {s.task_id[:24]:<24} {s.cron:<16} {s.timezone[:18]:<18} "
                     f"{'yes' if s.active else 'no':<6}  {', '.join(upcoming) or '-'}")
    return lines


def _line(schedule: Schedule) -> str:
    state = "active" if schedule.active else "inactive"
    nxt = schedule.next_run_at.isoformat() if schedule.next_run_at else "-"
    return f"{schedule.id} {state} next={nxt}"


@click.group()
def schedules() -> None:
    """Cron schedules: list, create, delete, activate, deactivate."""


@schedules.command("list")
@click.option("--task", help="Only schedules of this task.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def schedules_list(task: str | None, as_json: bool) -> None:
    """Schedules with their next three runs.  Example: tether schedules list --task report"""
    found = open_app().schedules.list(task=task)
    if as_json:
        echo_json([asdict(s) for s in found])
    else:
        click.echo("\n".join(schedule_table(found)))


@schedules.command("create")
@click.argument("task")
@click.argument("cron")
@click.option("--timezone", "-z", default="UTC", show_default=True, help="An IANA name.")
@click.option("--external-id", help="Your own id, passed to each run in its payload.")
@click.option("--deduplication-key", help="Creating again with the same key updates the schedule.")
@click.option("--missed", type=click.Choice(["once", "skip"]), default="once", show_default=True,
              help="Slots missed while no worker ran: fire the latest once, late, or skip them.")
def schedules_create(task: str, cron: str, timezone: str, external_id: str | None,
                     deduplication_key: str | None, missed: str) -> None:
    """Create a schedule of TASK. Prints its id and next run.

    \b
    Example:
      tether schedules create send-report "0 9 * * MON-FRI" --timezone Europe/London
    """
    schedule = open_app(create=True).schedules.create(
        task=task, cron=cron, timezone=timezone, external_id=external_id,
        deduplication_key=deduplication_key, missed=missed)
    click.echo(_line(schedule))


@schedules.command("delete")
@click.argument("schedule_id")
def schedules_delete(schedule_id: str) -> None:
    """Delete a schedule (a declared one comes back when a worker starts)."""
    open_app().schedules.delete(schedule_id)
    click.echo(f"{schedule_id} deleted")


@schedules.command("activate")
@click.argument("schedule_id")
def schedules_activate(schedule_id: str) -> None:
    """Fire again from the next slot on."""
    click.echo(_line(open_app().schedules.activate(schedule_id)))


@schedules.command("deactivate")
@click.argument("schedule_id")
def schedules_deactivate(schedule_id: str) -> None:
    """Stop firing until activated."""
    click.echo(_line(open_app().schedules.deactivate(schedule_id)))
