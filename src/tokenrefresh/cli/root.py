"""The Typer app, its sub-commands, and the one place where errors become exit codes.

Secrets are never options: they come from the environment or files (see `base/settings.py`).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from typer.core import TyperGroup

from tokenrefresh.base.scrub import safe_text, scrub
from tokenrefresh.base.version import __version__
from tokenrefresh.cli.pipe import EXIT_CLOSED_PIPE, closed_pipe
from tokenrefresh.errors import TokenRefreshError, UsageError

__all__ = [
    "EXIT_CLOSED_PIPE",
    "FIRST_RUN_HELP",
    "accounts_app",
    "app",
    "db_app",
    "errors_as_json",
    "events_app",
    "handles_errors",
    "keys_app",
    "print_error",
    "providers_app",
    "run",
    "setup",
]

log = logging.getLogger("tokenrefresh")

# What a first run needs, at the end of `tokenrefresh --help`; each paragraph after "\b" is
# printed as written (not rewrapped), within 80 columns.
FIRST_RUN_HELP = """\b
A first run needs, from the environment (each also as NAME_FILE, a file):
  TOKENREFRESH_ENCRYPTION_KEYS  the key(s): tokenrefresh keys generate
  TOKENREFRESH_DATABASE_URL     optional: SQLite in ~/.local/share by default
  TIKTOK_CLIENT_KEY             your TikTok app's client key
  TIKTOK_CLIENT_SECRET          and its client secret
Secrets are never options. docs/configuration.md in the source explains each.
"""

P = ParamSpec("P")
R = TypeVar("R")


class _Group(TyperGroup):
    """The root group: a usage error for an option names where its bad value came from;
    plain values skip pydantic (see `cli/coercion.py`)."""

    def make_context(self, info_name: str | None, args: list[str], *a: Any, **kw: Any) -> Any:
        from tokenrefresh.cli.coercion import install

        install()
        return super().make_context(info_name, args, *a, **kw)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except typer.BadParameter as error:
            _name_the_source(error)
            raise


def _name_the_source(error: typer.BadParameter) -> None:
    """Typer's hint for an option with an environment variable names both, wherever the
    value came from (`'--window' (env var: 'TOKENREFRESH_WINDOW')`): name the option for a
    value from the command line, the variable for one from the environment."""
    param, ctx = error.param, error.ctx
    envvar = getattr(param, "envvar", None)
    opts = getattr(param, "opts", None)
    if error.param_hint is not None or param is None or ctx is None or not envvar or not opts:
        return
    if type(error).__name__ == "MissingParameter":
        return
    source = ctx.get_parameter_source(param.name) if param.name else None
    option = " / ".join(f"'{opt}'" for opt in opts)
    if getattr(source, "name", None) == "ENVIRONMENT":
        names = [envvar] if isinstance(envvar, str) else list(envvar)
        variable = next((name for name in names if name in os.environ), names[0])
        error.param_hint = f"{variable} (the environment variable for {option})"
    elif getattr(source, "name", None) == "COMMANDLINE":
        error.param_hint = option


app = typer.Typer(
    cls=_Group,
    name="tokenrefresh",
    help="Keeps TikTok OAuth tokens fresh: refreshes, stores them encrypted, flags rejected ones.",
    epilog=FIRST_RUN_HELP,
    no_args_is_help=True,
    # Tracebacks with local variables would print tokens: never.
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    # Plain help: the same on every Typer version we support (rich help in Typer 0.29
    # shows every flag with a type, `--dry-run <bool>`, as if it took a value).
    rich_markup_mode=None,
)
accounts_app = typer.Typer(
    help="Import, list and manage connected TikTok accounts.", rich_markup_mode=None
)
keys_app = typer.Typer(
    help="Encryption keys: generate one, re-encrypt with the first, check.", rich_markup_mode=None
)
db_app = typer.Typer(
    help="The database schema (Alembic migrations shipped in the package).",
    rich_markup_mode=None,
)
events_app = typer.Typer(
    help="Events (an account needs its user, ...) and their delivery.", rich_markup_mode=None
)
app.add_typer(accounts_app, name="accounts", no_args_is_help=True)
app.add_typer(keys_app, name="keys", no_args_is_help=True)
app.add_typer(db_app, name="db", no_args_is_help=True)
providers_app = typer.Typer(
    help="Provider profiles: how each network refreshes (shipped, or from the config file).",
    rich_markup_mode=None,
)
app.add_typer(events_app, name="events", no_args_is_help=True)
app.add_typer(providers_app, name="providers", no_args_is_help=True)


def setup(verbose: int = 0, quiet: bool = False, json_lines: bool = False) -> None:
    """Logging for this command: -q errors only, -v info, -vv debug."""
    from tokenrefresh.base.logs import configure_logging

    if verbose and quiet:
        raise UsageError("--verbose and --quiet exclude each other")
    configure_logging(verbose=verbose, quiet=quiet, json_lines=json_lines)


def handles_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Every TokenRefreshError becomes `error: <message>` on stderr and its exit code."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except TokenRefreshError as error:
            print_error(error.message)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except BrokenPipeError:
            raise typer.Exit(closed_pipe()) from None
        except Exception as error:
            # A driver error that no layer translated: say what it is, without SQL or values.
            # Anything else is a bug: one clean line; the traceback only with -vv.
            from sqlalchemy.exc import DBAPIError

            log.debug("unexpected error", exc_info=error)
            if isinstance(error, DBAPIError):
                from tokenrefresh.storage.engine import describe_db_error

                print_error(f"database error: {describe_db_error(error)}")
            else:
                text = safe_text(scrub(str(error)[:1000]), 300)
                print_error(f"unexpected {type(error).__name__}: {text} (-vv shows where)")
            raise typer.Exit(1) from None

    return wrapper


@contextmanager
def errors_as_json(as_json: bool) -> Iterator[None]:
    """With --json, a TokenRefreshError also prints `{"error": {"code": <exit code>,
    "message": "..."}}` on stdout (scrubbed; handles_errors still prints `error: ...`)."""
    try:
        yield
    except TokenRefreshError as error:
        if as_json:
            document = {"error": {"code": error.exit_code, "message": scrub(error.message)}}
            sys.stdout.write(json.dumps(document, indent=2) + "\n")
        raise


def run() -> None:
    """The app, and its output's last flush: a reader that went away (`| head -1`) ends the
    command quietly with EXIT_CLOSED_PIPE, whether a command's write or this flush found it."""
    try:
        try:
            app()  # always ends in SystemExit
        finally:
            sys.stdout.flush()  # here, not at interpreter exit, where it would print a warning
    except BrokenPipeError:
        sys.exit(closed_pipe())


def print_error(message: str) -> None:
    """`error: ...` on stderr: scrubbed of every known secret, no control characters."""
    typer.echo(f"error: {safe_text(scrub(message), keep_newlines=True)}", err=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tokenrefresh {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Keeps TikTok OAuth tokens fresh (the app's `help=` and FIRST_RUN_HELP are what
    `tokenrefresh --help` shows)."""
