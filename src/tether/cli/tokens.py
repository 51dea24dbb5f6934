"""`tether tokens ...`: waitpoint tokens that runs wait for (human-in-the-loop)."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from tether.app import Tether
from tether.cli.format import compact, when
from tether.models import Token
from tether.serialization import parse_payload_text


def token_table(found: list[Token]) -> list[str]:
    lines = [f"{'ID':<36} {'STATUS':<10} {'RUN':<32} {'TIMEOUT':<23}  OUTPUT"]
    for t in found:
        output = compact(t.output, 60) if t.status == "COMPLETED" else "-"
        if t.run_ended is not None:  # nothing waits for it: say so instead of looking pending
            output = f"(its run ended {t.run_ended.value}; nothing waits for it)"
        lines.append(f"{t.id:<36} {t.status.value:<10} {t.run_id or '-':<32} "
                     f"{when(t.timeout_at):<23}  {output}")
    return lines


@click.group()
def tokens() -> None:
    """Waitpoint tokens: list them, complete one to resume the run waiting for it."""


@tokens.command("list")
@click.option("--status", "statuses", multiple=True,
              help="WAITING, COMPLETED or TIMED_OUT (repeatable).")
@click.option("--limit", default=25, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def tokens_list(statuses: tuple[str, ...], limit: int, as_json: bool) -> None:
    """Tokens, newest first.  Example: tether tokens list --status WAITING"""
    found = Tether().tokens.list(status=list(statuses) or None, limit=limit)
    if as_json:
        click.echo(json.dumps([asdict(t) for t in found], indent=2, default=str))
        return
    for line in token_table(found):
        click.echo(line)


@tokens.command("complete")
@click.argument("token_id", metavar="TOKEN")
@click.argument("data", metavar="[DATA_JSON]", required=False, default="null")
def tokens_complete(token_id: str, data: str) -> None:
    """Complete TOKEN with DATA_JSON (default null): the run waiting for it resumes with it.

    \b
    Example: tether tokens complete waitpoint_01J... '{"approved": true}'
    Completing a token twice is harmless; an unknown or timed-out token is an error, and so is
    one whose run ended with nothing waiting for it (it would resume nothing).
    """
    token = Tether().tokens.complete(token_id, parse_payload_text(data))
    click.echo(f"{token.id} {token.status.value} output={compact(token.output)}")
