"""`tether serve` and `tether dev`."""

from __future__ import annotations

import logging
import sys

import click

from tether.app import Tether
from tether.server.app import ServerConfig

HOST_HELP = "Address to listen on. Keep 127.0.0.1 unless a proxy in front handles TLS."


def _public_url(host: str, port: int, public_url: str | None) -> str:
    return (public_url or f"http://{host}:{port}").rstrip("/")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help=HOST_HELP)
@click.option("--port", default=8030, show_default=True, type=int)
@click.option("--public-url", metavar="URL",
              help="The address clients use to reach this server, for callback and upload URLs. "
                   "Default: http://HOST:PORT")
@click.option("--log-level", default="info", show_default=True)
def serve(host: str, port: int, public_url: str | None, log_level: str) -> None:
    """Serve the HTTP API and the dashboard (no worker: run `tether worker` beside it).

    Every API request needs a key (`tether keys create`); the dashboard asks for one at login.

    \b
    Example:
      TETHER_DATABASE_URL=postgresql://localhost/app tether serve --port 8030
    """
    from tether.server.run import serve as run_server

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tether = Tether()
    url = _public_url(host, port, public_url)
    click.echo(f"Tether API and dashboard on {url} (database {tether.database_url})", err=True)
    run_server(tether, host, port, ServerConfig(public_url=url), log_level)


@click.command()
@click.argument("app_ref", metavar="APP")
@click.option("--host", default="127.0.0.1", show_default=True, help=HOST_HELP)
@click.option("--port", default=8030, show_default=True, type=int)
@click.option("--concurrency", "-c", default=10, show_default=True,
              help="How many runs the worker executes at once.")
@click.option("--reload/--no-reload", default=True, show_default=True,
              help="Restart the worker and server when a .py file next to APP changes.")
@click.option("--log-level", default="info", show_default=True)
def dev(app_ref: str, host: str, port: int, concurrency: int, reload: bool, log_level: str) -> None:
    """Develop locally: a worker for APP, the API and the dashboard in one command.

    Opens the dashboard at http://127.0.0.1:8030 without a login (from this machine), prints a
    development API key (kept in .tether/dev-key) and restarts when the code changes.

    \b
    Example:
      tether dev app.py
      TRIGGER_API_URL=http://127.0.0.1:8030 TRIGGER_SECRET_KEY=<printed key> node trigger.mjs
    """
    from tether.server.run import dev_key, run_dev_process, watched_paths

    tether = Tether()
    tether.storage.migrate()
    key = dev_key(tether)
    tether.close()
    url = f"http://{host}:{port}"
    click.echo(f"\n  Tether dev: {url}\n  Database:   {tether.database_url}\n"
               f"  API key:    {key}\n  Trigger.dev SDK: TRIGGER_API_URL={url} TRIGGER_SECRET_KEY={key}\n",
               err=True)
    args = (app_ref, host, port, concurrency, log_level)
    if not reload:
        run_dev_process(*args)
        return
    import watchfiles

    paths = watched_paths(app_ref)
    click.echo(f"  Watching {', '.join(map(str, paths))} for changes to .py files\n", err=True)
    watchfiles.run_process(*paths, target=run_dev_process, args=args,
                           watch_filter=watchfiles.PythonFilter(), sigint_timeout=8,
                           callback=lambda changes: click.echo(
                               f"  {len(changes)} file(s) changed: restarting", err=True))
    sys.exit(0)
