"""`tether serve` and `tether dev`."""

from __future__ import annotations

import os
import re
import sys

import click

from tether.app import Tether
from tether.cli.common import configure_logging, settings
from tether.durations import seconds
from tether.errors import TetherError

HOST_HELP = "Address to listen on. Keep 127.0.0.1 unless a proxy in front handles TLS."
PORT_HELP = "Port to listen on. One that another process holds is an error at once."
SIZE_HELP = ("The most a request's body may hold: bytes, or a number with KB, MB or GB (powers "
             "of 1024). Larger ones get 413, after the key is checked. Default: 32MB, or twice "
             "the app's max_payload_size and 1MB if that is more.")
UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2,
         "mib": 1024**2, "g": 1024**3, "gb": 1024**3, "gib": 1024**3}


def parse_size(text: str) -> int:
    """A size like "32MB", "512KB" or "1048576" in bytes (KB, MB and GB are powers of 1024)."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = found[2].lower() if found else ""
    if found is None or unit not in UNITS or float(found[1]) * UNITS[unit] < 1:
        raise ValueError(f"{text!r} is not a size: use bytes, or a number with KB, MB or GB, "
                         "like 32MB")
    return int(float(found[1]) * UNITS[unit])


def _size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> float:
    try:
        return seconds(value, param.name or "duration")
    except TetherError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


SIZE_OPTION = click.option("--max-request-size", "max_request_size", default=None,
                           callback=_size, envvar="TETHER_MAX_REQUEST_SIZE",
                           show_envvar=True, metavar="SIZE", help=SIZE_HELP)


def _public_url(host: str, port: int, public_url: str | None) -> str:
    return (public_url or f"http://{host}:{port}").rstrip("/")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help=HOST_HELP)
@click.option("--port", default=8030, show_default=True, type=int, help=PORT_HELP)
@click.option("--public-url", metavar="URL",
              help="The address clients use to reach this server, for callback and upload URLs. "
                   "Default: http://HOST:PORT")
@SIZE_OPTION
@click.option("--alert-webhook", "alert_webhooks", multiple=True, metavar="URL",
              help="POST a signed JSON alert to URL when a run fails for good, a queue backs up "
                   "or a worker stalls. Repeat for several URLs. Default: "
                   "TETHER_ALERT_WEBHOOKS (URLs separated by commas or spaces).")
@click.option("--alert-secret", envvar="TETHER_ALERT_SECRET", show_envvar=True, metavar="SECRET",
              help="The key of the HMAC-SHA256 signature each alert carries in "
                   "X-Tether-Signature (at least 16 characters; the receivers hold the same). "
                   "Required with webhooks.")
@click.option("--alert-queue-wait", envvar="TETHER_ALERT_QUEUE_WAIT", show_envvar=True,
              default="5m", show_default=True, callback=_duration, metavar="DURATION",
              help="Alert when a queue's oldest ready run has waited longer than this "
                   "(seconds, or 90s, 5m, 1h).")
def serve(host: str, port: int, public_url: str | None, max_request_size: int | None,
          alert_webhooks: tuple[str, ...], alert_secret: str | None,
          alert_queue_wait: float) -> None:
    """Serve the HTTP API and the dashboard (no worker: run `tether worker` beside it).

    Every API request needs a key (`tether keys create`); the dashboard asks for one at login.
    Prometheus metrics are at /metrics, with the same key (Authorization: Bearer KEY).
    Traces: OTEL_EXPORTER_OTLP_ENDPOINT exports spans over OTLP/HTTP, as for `tether worker`.

    With --alert-webhook (or TETHER_ALERT_WEBHOOKS), the server also sends alerts: each is stored
    as a run of the built-in task `tether.alert` (queue `tether-alerts`) and delivered by the
    server with retries for about an hour, so alerts survive a restart. See the Alerts page of
    the documentation for the body and how to check the signature.

    \b
    Example:
      TETHER_DATABASE_URL=postgresql://localhost/app tether serve --port 8030
      tether serve --alert-webhook https://hooks.example.com/tether --alert-secret "$SECRET"
    """
    from tether.alerts.config import AlertConfig, split_urls
    from tether.alerts.events import shown
    from tether.observe.otel_metrics import configure_from_env
    from tether.server.app import ServerConfig
    from tether.server.run import listen_socket
    from tether.server.run import serve as run_server

    webhooks = split_urls(alert_webhooks or os.environ.get("TETHER_ALERT_WEBHOOKS"))
    url = _public_url(host, port, public_url)
    alerts = AlertConfig(tuple(webhooks), alert_secret or "", alert_queue_wait, url)
    sock = listen_socket(host, port)  # first: a port in use stops here, before anything starts
    configure_logging("info")
    configure_from_env("tether-server")
    tether = Tether()
    click.echo(f"Tether API and dashboard on {url} (database {tether.database_url})", err=True)
    if alerts.enabled:
        click.echo(f"Alerts to {', '.join(shown(u) for u in webhooks)}", err=True)
    config = ServerConfig(public_url=url, max_request_size=max_request_size)
    run_server(tether, sock, config, settings().log_level or "info", alerts)


@click.command()
@click.argument("app_ref", metavar="APP")
@click.option("--host", default="127.0.0.1", show_default=True, help=HOST_HELP)
@click.option("--port", default=8030, show_default=True, type=int, help=PORT_HELP)
@click.option("--concurrency", "-c", default=10, show_default=True,
              help="How many runs the worker executes at once.")
@click.option("--reload/--no-reload", default=True, show_default=True,
              help="Restart the worker and server when a .py file next to APP changes.")
@SIZE_OPTION
def dev(app_ref: str, host: str, port: int, concurrency: int, reload: bool,
        max_request_size: int | None) -> None:
    """Develop locally: a worker for APP, the API and the dashboard in one command.

    Opens the dashboard at http://127.0.0.1:8030 without a login (from this machine), prints a
    development API key (kept in .tether/dev-key) and restarts when the code changes.

    \b
    Example:
      tether dev app.py
      TRIGGER_API_URL=http://127.0.0.1:8030 TRIGGER_SECRET_KEY=<printed key> node trigger.mjs
    """
    from tether.server.run import (
        dev_key,
        listen_socket,
        run_dev_generation,
        run_dev_process,
        watched_paths,
    )

    sock = listen_socket(host, port)  # first: a port in use stops here, before anything starts
    tether = Tether()
    tether.storage.migrate()
    key = dev_key(tether)
    tether.close()
    url = f"http://{host}:{port}"
    click.echo(f"\n  Tether dev: {url}\n  Database:   {tether.database_url}\n"
               f"  API key:    {key}\n  Trigger.dev SDK: TRIGGER_API_URL={url} TRIGGER_SECRET_KEY={key}\n",
               err=True)
    log_level = settings().log_level or "info"
    if not reload:
        run_dev_process(app_ref, sock, url, concurrency, log_level, max_request_size)
        return
    import watchfiles

    paths = watched_paths(app_ref)
    click.echo(f"  Watching {', '.join(map(str, paths))} for changes to .py files\n", err=True)
    args = (app_ref, sock, url, concurrency, log_level, max_request_size,
            settings().show_traceback)
    watchfiles.run_process(*paths, target=run_dev_generation, args=args,
                           watch_filter=watchfiles.PythonFilter(), sigint_timeout=8,
                           callback=lambda changes: click.echo(
                               f"  {len(changes)} file(s) changed: restarting", err=True))
    sys.exit(0)
