"""`tether keys ...`: API keys for the HTTP API and the dashboard (create, list, revoke)."""

from __future__ import annotations

import json

import click

from tether.cli.common import echo_json, open_app
from tether.cli.format import when
from tether.keys import ApiKey


def key_status(key: ApiKey) -> str:
    return "active" if key.active else f"revoked {when(key.revoked_at)}"


def key_table(found: list[ApiKey]) -> list[str]:
    lines = [f"{'ID':<30} {'NAME':<20} {'PREFIX':<12} {'CREATED':<23}  {'LAST USED':<23}  STATUS"]
    for k in found:
        lines.append(f"{k.id:<30} {k.name[:20]:<20} {k.prefix:<12} {when(k.created_at):<23}  "
                     f"{when(k.last_used_at):<23}  {key_status(k)}")
    return lines


@click.group()
def keys() -> None:
    """API keys for the HTTP API and the dashboard: create, list, revoke."""


@keys.command("create")
@click.option("--name", default="default", show_default=True,
              help="A label to tell keys apart (where the key is used, who holds it).")
@click.option("--json", "as_json", is_flag=True, help="Print {id, name, secret} as JSON.")
def keys_create(name: str, as_json: bool) -> None:
    """Create a key and print its secret, once: only its hash is stored.

    \b
    Example:
      tether keys create --name ci
      curl -H "Authorization: Bearer tk_..." http://127.0.0.1:8030/api/v1/queues
    """
    key = open_app(create=True).keys.create(name)
    if as_json:
        click.echo(json.dumps({"id": key.id, "name": key.name, "secret": key.secret}, indent=2))
        return
    click.echo(f"Created API key {key.id} (name: {key.name}). Its secret:\n")
    click.echo(f"    {key.secret}\n")
    click.echo("Copy it now: it will not be shown again (Tether keeps only its hash).")
    click.echo("Send it as the header  Authorization: Bearer <secret>")


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def keys_list(as_json: bool) -> None:
    """Every key, revoked ones included, oldest first (secrets are never shown).

    \b
    Example: tether keys list
    """
    found = open_app().keys.list()
    if as_json:
        echo_json([{"id": k.id, "name": k.name, "prefix": k.prefix, "created_at": k.created_at,
                    "last_used_at": k.last_used_at, "revoked_at": k.revoked_at} for k in found])
        return
    if not found:
        click.echo("No API keys yet. Create one with: tether keys create --name NAME")
        return
    for line in key_table(found):
        click.echo(line)


@keys.command("revoke")
@click.argument("key", metavar="KEY")
def keys_revoke(key: str) -> None:
    """Revoke KEY (its id, or its name if one active key has it): requests with it are refused
    from now on. Revoking a key twice is harmless.

    \b
    Example: tether keys revoke ci
    """
    revoked = open_app().keys.revoke(key)
    click.echo(f"{revoked.id} (name: {revoked.name}) {key_status(revoked)}")
