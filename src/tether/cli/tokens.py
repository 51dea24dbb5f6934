"""`tether tokens ...`: waitpoint tokens that runs wait for (human-in-the-loop)."""

from __future__ import annotations

from dataclasses import asdict

import click

from tether.cli.common import choice, echo_json, limit_option, open_app, say_if_more
from tether.cli.format import compact, when
from tether.models import Token, TokenStatus
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
@click.option("--status", "statuses", multiple=True, type=choice(TokenStatus),
              help="Only tokens in this status (repeatable; any case).")
@limit_option()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def tokens_list(statuses: tuple[str, ...], limit: int, as_json: bool) -> None:
    """Tokens, newest first. When there are more than --limit, stderr says so.

    \b
    Example: tether tokens list --status WAITING
    """
    app = open_app()
    status = list(statuses) or None
    found = app.tokens.list(status=status, limit=limit)
    more = len(found) == limit and bool(app.tokens.list(status=status, limit=1,
                                                        before=found[-1].id))
    if as_json:
        echo_json([asdict(t) for t in found])
    else:
        click.echo("\n".join(token_table(found)))
    say_if_more(len(found), more, "tokens", "--status")


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
    token = open_app().tokens.complete(token_id, parse_payload_text(data, "token data"))
    click.echo(f"{token.id} {token.status.value} output={compact(token.output)}")
