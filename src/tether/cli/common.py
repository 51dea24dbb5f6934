"""What every `tether` command shares: the global options (accepted before or after the command's
name), errors shown as one line, opening the app, JSON output and the `--limit` option."""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, TypeVar

import click

from tether.app import Tether
from tether.errors import TetherError
from tether.observe.tracing import LOG_FORMAT
from tether.storage import database_url, sqlite_path

F = TypeVar("F", bound=Callable[..., Any])

LOG_LEVELS = ("debug", "info", "warning", "error")
DATABASE_HELP = ("Where runs are stored (env TETHER_DATABASE_URL). "
                 "Default: sqlite:///.tether/tether.db")
LOG_LEVEL_HELP = ("How much to log: debug (which also shows an error's traceback), info, warning or "
                  "error. Default: info for worker, serve and dev; other commands log only "
                  "warnings.")
TRACEBACK_HELP = "On an error, show the full Python traceback before the one-line message."
NO_DATABASE = ("no Tether database at {path} (run a worker, `tether db upgrade` or `tether trigger` "
               "to create one; or set --database / TETHER_DATABASE_URL)")


# -- the global options ---------------------------------------------------------------------------
@dataclass
class Settings:
    """What the global options asked for; kept in the context's `meta`, which every command's
    context shares with the root's."""

    log_level: str | None = None
    traceback: bool = False

    @property
    def show_traceback(self) -> bool:
        return self.traceback or self.log_level == "debug"


def settings(ctx: click.Context | None = None) -> Settings:
    meta = (ctx or click.get_current_context()).meta
    found: Settings = meta.setdefault("tether.settings", Settings())
    return found


def _set_database(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    # the environment, not the context: `tether dev` hands it to the processes it starts and the
    # user's own `Tether()` reads it
    if value:
        os.environ["TETHER_DATABASE_URL"] = value


def _set_log_level(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        settings(ctx).log_level = value.lower()


def _set_traceback(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        settings(ctx).traceback = True


def global_options(*, root: bool) -> list[click.Option]:
    """New `--database`, `--log-level` and `--traceback` options. Only the root's reads the
    environment: a command's own ones change something only when written."""
    return [
        click.Option(["--database"], metavar="URL", expose_value=False, callback=_set_database,
                     envvar="TETHER_DATABASE_URL" if root else None, help=DATABASE_HELP),
        click.Option(["--log-level"], type=click.Choice(LOG_LEVELS, case_sensitive=False),
                     expose_value=False, callback=_set_log_level, help=LOG_LEVEL_HELP),
        click.Option(["--traceback"], is_flag=True, expose_value=False, callback=_set_traceback,
                     help=TRACEBACK_HELP),
    ]


def add_global_options(group: click.Group) -> None:
    """Give every command under `group` the global options, so that `tether runs list --database
    URL` works as well as `tether --database URL runs list` (the one nearest the command wins)."""
    for command in group.commands.values():
        command.params.extend(global_options(root=False))
        if isinstance(command, click.Group):
            add_global_options(command)


def configure_logging(default: str = "warning") -> None:
    """Logging on stderr at the level asked for; commands that run a while default to info."""
    level = settings().log_level or default
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)


# -- errors: one line -----------------------------------------------------------------------------
class CommandError(click.ClickException):
    """A failed command: `Error: message` on stderr, after the traceback if one was asked for."""

    def __init__(self, message: str, cause: BaseException | None = None, *,
                 show_traceback: bool = False) -> None:
        super().__init__(message)
        self.cause = cause
        self.show_traceback = show_traceback

    def show(self, file: IO[Any] | None = None) -> None:
        out = file or sys.stderr
        if self.show_traceback and self.cause is not None:
            traceback.print_exception(self.cause, file=out)
        click.echo(f"Error: {self.format_message()}", file=out)


class BadValue(CommandError):
    """A value refused by the library (a ValueError): exit 2, as click's usage errors."""

    exit_code = 2


class Aborted(CommandError):
    """Ctrl-C while a command waits (`trigger --wait`): exit 130, as a shell reports SIGINT."""

    exit_code = 130

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo("Aborted.", file=file or sys.stderr)


class OneLineUsageError(click.UsageError):
    """A usage error (unknown option, bad value) as one line that names the help to read, instead
    of click's usage line, hint and blank line."""

    def show(self, file: IO[Any] | None = None) -> None:
        where = f" (see: {self.ctx.command_path} --help)" if self.ctx is not None else ""
        click.echo(f"Error: {self.format_message()}{where}", file=file or sys.stderr)


def _one_line(exc: click.UsageError) -> click.UsageError:
    if isinstance(exc, (OneLineUsageError, click.exceptions.NoArgsIsHelpError)):
        return exc
    return OneLineUsageError(exc.format_message(), exc.ctx)


def command_error(exc: Exception, show_traceback: bool) -> click.ClickException:
    """What a command's exception shows. Tether's errors and bad values say what is wrong; anything
    else is unexpected, so it names its type and how to see where it came from."""
    if isinstance(exc, click.UsageError):
        return _one_line(exc)
    if isinstance(exc, click.ClickException):
        return exc
    if isinstance(exc, TetherError):
        return CommandError(str(exc), exc, show_traceback=show_traceback)
    if isinstance(exc, ValueError):
        return BadValue(str(exc), exc, show_traceback=show_traceback)
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    hint = "" if show_traceback else " (run it again with --traceback to see where)"
    return CommandError(f"unexpected {text}{hint}", exc, show_traceback=show_traceback)


class TetherGroup(click.Group):
    """The `tether` group: whatever a command raises is shown as one line (see `command_error`),
    in the installed command and under click's test runner alike."""

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise _one_line(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (KeyboardInterrupt, click.exceptions.Abort):
            raise Aborted("aborted") from None
        except click.exceptions.Exit:
            raise
        except Exception as exc:
            raise command_error(exc, settings(ctx).show_traceback) from None


# -- opening the app ------------------------------------------------------------------------------
def open_app(*, create: bool = False) -> Tether:
    """The app on the database chosen, closed when the command ends. Only commands that create
    things (`create=True`) may create an SQLite file: reading from a mistyped path, or from another
    working directory than the worker's, must not leave a new empty database behind."""
    if settings().log_level is not None:
        configure_logging()
    if not create:
        path = sqlite_path(database_url())
        if path is not None and not path.exists():
            raise CommandError(NO_DATABASE.format(path=path))
    app = Tether()
    click.get_current_context().call_on_close(app.close)
    return app


# -- output ---------------------------------------------------------------------------------------
def iso(moment: datetime) -> str:
    """UTC with milliseconds and a Z, as the HTTP API writes times (JavaScript's toISOString)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    return str(value)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=_json_default))


LIMIT_HELP = "Show at most N, newest first."


def limit_option(default: int = 25) -> Callable[[F], F]:
    return click.option("--limit", type=click.IntRange(1, 1000), default=default,
                        show_default=True, metavar="N", help=LIMIT_HELP)


def say_if_more(shown: int, more: bool, what: str, filters: str) -> None:
    """On stderr (stdout stays the table or JSON): a full page may not be everything."""
    if more:
        click.echo(f"{shown} of more {what} shown (newest first); use --limit N or filters "
                   f"({filters}) to see others", err=True)


if TYPE_CHECKING:
    _Choice = click.Choice[str]
else:  # generic only from click 8.2 on
    _Choice = click.Choice


class AnyCase(_Choice):
    """Upper-case names matched in any case (`--status failed`); a wrong one is refused with the
    list of the valid ones, as they are written."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        for name in self.choices:
            if str(value).upper() == name.upper():
                return name
        self.fail(f"{value!r} is not one of {', '.join(self.choices)}", param, ctx)


def choice(values: Iterable[str]) -> AnyCase:
    return AnyCase([str(value) for value in values])
