"""`tether rate-limits ...`: named rate limits that tasks take from (`ctx.step(...,
rate_limit=NAME)`, `ctx.acquire(NAME)`): set, list, delete."""

from __future__ import annotations

from dataclasses import asdict

import click

from tether.cli.common import echo_json, open_app
from tether.durations import duration_text
from tether.rate_limits import NamedLimit


def _number(value: float) -> str:
    return f"{value:g}"


def limit_table(found: list[NamedLimit]) -> list[str]:
    lines = [f"{'NAME':<32} {'LIMIT':>10} {'PER':>8} {'BURST':>8} {'PER SECOND':>12}"]
    for lim in found:
        lines.append(f"{lim.name[:32]:<32} {_number(lim.limit):>10} "
                     f"{duration_text(lim.period):>8} {_number(lim.burst):>8} "
                     f"{lim.per_second:>12.4g}")
    return lines


@click.group("rate-limits")
def rate_limits() -> None:
    """Named rate limits shared by every worker: set, list, delete."""


@rate_limits.command("set")
@click.argument("name")
@click.argument("limit", type=float)
@click.argument("period")
@click.option("--burst", type=float, default=1.0, show_default=True,
              help="Units that may go at once (a take's weight can never be more).")
def rate_limits_set(name: str, limit: float, period: str, burst: float) -> None:
    """Create or change the limit NAME: at most LIMIT units per PERIOD (seconds, or text such as
    1s, 1m, 1h), BURST at once. What was taken from it is kept.

    \b
    Example:
      tether rate-limits set openai 500 1m
      tether rate-limits set openai-tokens 90000 1m --burst 8000
    """
    made = open_app(create=True).rate_limits.set(name, limit, period, burst=burst)
    click.echo(f"{made.name}: {_number(made.limit)} per {duration_text(made.period)}, "
               f"burst {_number(made.burst)}")


@rate_limits.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def rate_limits_list(as_json: bool) -> None:
    """Every named limit, by name.

    \b
    Example: tether rate-limits list --json
    """
    found = open_app().rate_limits.list()
    if as_json:
        echo_json([asdict(lim) for lim in found])
        return
    if not found:
        click.echo("No rate limits yet. Create one with: tether rate-limits set NAME LIMIT PERIOD")
        return
    click.echo("\n".join(limit_table(found)))


@rate_limits.command("delete")
@click.argument("name")
def rate_limits_delete(name: str) -> None:
    """Delete the limit NAME. Runs that still take from it then fail with UnknownRateLimit.

    \b
    Example: tether rate-limits delete openai
    """
    if not open_app().rate_limits.delete(name):
        raise click.ClickException(f"no rate limit named {name!r}")
    click.echo(f"deleted {name}")
