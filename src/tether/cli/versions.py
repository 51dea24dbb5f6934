"""`tether versions`: which code versions have live workers and unfinished runs."""

from __future__ import annotations

import dataclasses

import click

from tether.cli.common import echo_json, open_app


@click.command("versions")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def versions(as_json: bool) -> None:
    """Code versions with live workers or unfinished runs: per version, its workers and its
    runs by status, so you know when an old fleet of workers can go.

    \b
    Example: tether versions
    A worker runs the version given by `tether worker --version`, Tether(version=...),
    TETHER_VERSION, or by default a hash of its tasks' sources.
    """
    found = open_app().versions.list()
    if as_json:
        echo_json([{**dataclasses.asdict(v), "unfinished": v.unfinished} for v in found])
        return
    if not found:
        click.echo("No live workers and no unfinished runs.")
        return
    click.echo(f"{'VERSION':<24} {'WORKERS':>7}  {'UNFINISHED':>10}  RUNS BY STATUS")
    for v in found:
        statuses = ", ".join(f"{s} {n}" for s, n in sorted(v.runs.items())) or "-"
        name = v.version if v.version is not None else "(not started)"
        click.echo(f"{name:<24} {len(v.workers):>7}  {v.unfinished:>10}  {statuses}")
