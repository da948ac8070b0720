"""The Typer app: options, environment variables, help text, and errors -> exit codes.

Each command is a thin adapter: read Settings, build what it needs through Context, make
one service call, render the result. Heavy modules are imported inside the commands, so
`tokenrefresh --help` starts fast.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer

from tokenrefresh import __version__
from tokenrefresh.durations import format_duration, parse_duration
from tokenrefresh.errors import EXIT_USAGE, LockHeld, TokenRefreshError, UsageError
from tokenrefresh.settings import Settings
from tokenrefresh.storage.records import Shard  # plain dataclasses: cheap to import

if TYPE_CHECKING:
    from tokenrefresh.context import Context
    from tokenrefresh.crypto import TokenCipher
    from tokenrefresh.monitoring import Monitoring
    from tokenrefresh.refresh.observers import RunObserver
    from tokenrefresh.refresh.plan import Plan
    from tokenrefresh.refresh.report import RunReport
    from tokenrefresh.refresh.run import Refresher
    from tokenrefresh.storage.records import AccountView
    from tokenrefresh.storage.repository import Repository

log = logging.getLogger("tokenrefresh")

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="tokenrefresh",
    help="Keeps TikTok OAuth tokens fresh: refreshes, stores them encrypted, flags rejected ones.",
    no_args_is_help=True,
    # Tracebacks with local variables would print tokens: never.
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
accounts_app = typer.Typer(help="Import, list and manage connected TikTok accounts.")
keys_app = typer.Typer(help="Encryption keys: generate one, re-encrypt with the first, check.")
db_app = typer.Typer(help="The database schema (Alembic migrations shipped in the package).")
app.add_typer(accounts_app, name="accounts", no_args_is_help=True)
app.add_typer(keys_app, name="keys", no_args_is_help=True)
app.add_typer(db_app, name="db", no_args_is_help=True)


class LogFormat(StrEnum):
    human = "human"
    json = "json"


class StatusFilter(StrEnum):
    active = "active"
    expired = "expired"
    disabled = "disabled"


# ----------------------------------------------------------------------------- option parsers


def _duration(text: str | timedelta) -> timedelta:
    if isinstance(text, timedelta):  # the default, already parsed
        return text
    try:
        value = parse_duration(text)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    return value


def _positive_duration(text: str | timedelta) -> timedelta:
    value = _duration(text)
    if value <= timedelta(0):
        raise typer.BadParameter("must be longer than 0s")
    return value


def _shard(text: str) -> Shard:
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit()) or not 0 <= int(index) < int(count):
        raise typer.BadParameter(f"{text!r} is not a shard: use K/N with 0 <= K < N, e.g. 0/4")
    return Shard(int(index), int(count))


# ----------------------------------------------------------------------------- shared options

Verbose = Annotated[
    int, typer.Option("--verbose", "-v", count=True, help="More log output on stderr (-vv: debug).")
]
Quiet = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print nothing unless something went wrong.")
]
AsJson = Annotated[
    bool, typer.Option("--json", help="Print stable JSON (shapes in the README); never a token.")
]
LogFormatOption = Annotated[
    LogFormat,
    typer.Option(
        "--log-format",
        envvar="TOKENREFRESH_LOG_FORMAT",
        help="Log lines on stderr: human, or one JSON object per line.",
    ),
]
Window = Annotated[
    timedelta,
    typer.Option(
        parser=_positive_duration,
        envvar="TOKENREFRESH_WINDOW",
        metavar="DURATION",
        show_default="90m",
        help="Refresh access tokens that expire within this time (e.g. 90m, 2h).",
    ),
]
MetricsFile = Annotated[
    Path | None,
    typer.Option(
        envvar="TOKENREFRESH_METRICS_FILE",
        dir_okay=False,
        help="Write Prometheus metrics here (atomically), for node_exporter's textfile collector.",
    ),
]


def _setup(verbose: int, quiet: bool, log_format: LogFormat = LogFormat.human) -> None:
    from tokenrefresh.logs import configure_logging

    if verbose and quiet:
        raise UsageError("--verbose and --quiet exclude each other")
    configure_logging(verbose=verbose, quiet=quiet, json_lines=log_format is LogFormat.json)


def _handles_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Every TokenRefreshError becomes `error: <message>` on stderr and its exit code."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except TokenRefreshError as error:
            _print_error(error.message)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as error:
            # A driver error that no layer translated: say what it is, without SQL or values.
            # Anything else is a bug: one clean line; the traceback only with -vv.
            from sqlalchemy.exc import DBAPIError

            log.debug("unexpected error", exc_info=error)
            if isinstance(error, DBAPIError):
                from tokenrefresh.storage.engine import describe_db_error

                _print_error(f"database error: {describe_db_error(error)}")
            else:
                from tokenrefresh.scrub import safe_text, scrub

                text = safe_text(scrub(str(error)[:1000]), 300)
                _print_error(f"unexpected {type(error).__name__}: {text} (-vv shows where)")
            raise typer.Exit(1) from None

    return wrapper


def _named(account: AccountView) -> str:
    """`7 (abc123)`: an account as a terminal may show it (open_ids come from outside)."""
    from tokenrefresh.scrub import safe_text

    return f"{account.id} ({safe_text(account.open_id, 255)})"


def _print_error(message: str) -> None:
    """`error: ...` on stderr: scrubbed of every known secret, no control characters."""
    from tokenrefresh.scrub import safe_text, scrub

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
    """Keeps TikTok OAuth tokens fresh.

    Configuration comes from the environment (each variable also as NAME_FILE):
    TOKENREFRESH_DATABASE_URL, TOKENREFRESH_ENCRYPTION_KEYS, TIKTOK_CLIENT_KEY,
    TIKTOK_CLIENT_SECRET, TIKTOK_API_BASE_URL. Secrets are never command-line options.
    """


# ----------------------------------------------------------------------------- refresh


@app.command()
@_handles_errors
def refresh(
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="List what would be refreshed; call nothing, write nothing."
        ),
    ] = False,
    account_id: Annotated[
        list[int] | None,
        typer.Option(
            "--account-id",
            help="Refresh exactly this account, whatever its expiry or status (repeatable).",
        ),
    ] = None,
    window: Window = timedelta(minutes=90),
    concurrency: Annotated[
        int,
        typer.Option(
            min=1, max=256, envvar="TOKENREFRESH_CONCURRENCY", help="Refreshes in flight at once."
        ),
    ] = 8,
    rate_limit: Annotated[
        float | None,
        typer.Option(
            min=0.01,
            envvar="TOKENREFRESH_RATE_LIMIT",
            help="At most this many TikTok calls per second (default: no limit).",
        ),
    ] = None,
    max_runtime: Annotated[
        timedelta,
        typer.Option(
            parser=_duration,
            envvar="TOKENREFRESH_MAX_RUNTIME",
            metavar="DURATION",
            show_default="25m",
            help="Claim nothing new after this long; in-flight refreshes finish (0: no limit).",
        ),
    ] = timedelta(minutes=25),
    shard: Annotated[
        Shard | None,
        typer.Option(
            parser=_shard,
            envvar="TOKENREFRESH_SHARD",
            metavar="K/N",
            help="Only accounts with id mod N = K, with a lock of their own.",
        ),
    ] = None,
    http_timeout: Annotated[
        float,
        typer.Option(
            min=0.1, envvar="TOKENREFRESH_HTTP_TIMEOUT", help="Seconds to wait for TikTok's answer."
        ),
    ] = 20.0,
    metrics_file: MetricsFile = None,
    as_json: AsJson = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
    log_format: LogFormatOption = LogFormat.human,
) -> None:
    """Refresh every access token that expires within the window: the cron job."""
    _setup(verbose, quiet, log_format)
    from tokenrefresh.context import Context
    from tokenrefresh.refresh.plan import Plan, RefreshOptions
    from tokenrefresh.render import Output

    options = RefreshOptions(
        window=window,
        account_ids=tuple(account_id or ()),
        concurrency=concurrency,
        rate_limit=rate_limit,
        max_runtime=max_runtime or None,
        shard=shard,
    )
    settings = _job_settings("refresh", shard, dry_run)
    monitoring = _monitoring("refresh", settings, metrics_file, window, enabled=not dry_run)
    with Context(settings) as context, _refusal_recorded(context, "refresh", shard, dry_run):
        repository = context.repository(pool_size=concurrency + 2)
        cipher = context.cipher(verify_with=repository)
        # A dry run checks that the credentials are there, but never needs the HTTP stack.
        settings.require_client_credentials()
        plan = Plan(repository, options)
        if dry_run:
            report = plan.dry_run()
        else:
            report = _run(
                context,
                plan,
                cipher,
                monitoring,
                http_timeout,
                show_progress=not (quiet or as_json),
            )
    # A run that an error ended (TikTok rejected the app's credentials) says so on stderr;
    # with --json its document is printed too, as for every run that got past configuration.
    if as_json or report.error is None:
        Output(as_json=as_json).refresh(report, quiet=quiet)
    if report.error is not None:
        _print_error(report.error.message)
    raise typer.Exit(report.exit_code)


def _run(
    context: Context,
    plan: Plan,
    cipher: TokenCipher,
    monitoring: Monitoring | None,
    http_timeout: float,
    *,
    show_progress: bool,
) -> RunReport:
    """The refresh run itself: its client, its lock, signals, pings and metrics."""
    from tokenrefresh.refresh.run import Refresher
    from tokenrefresh.render import refresh_summary

    repository = context.repository()
    client = context.client(read_timeout=http_timeout)
    # On PostgreSQL a run for named accounts needs no run lock: its row locks keep it
    # apart from a cron run over the same accounts, which it must not wait for.
    needs_lock = not (plan.explicit and context.holds_row_locks)
    lock = context.run_lock("refresh", plan.options.shard) if needs_lock else None
    observer = _observer(monitoring, show_progress=show_progress)
    refresher = Refresher(repository, cipher, client, lock, observer=observer)
    with _graceful_stop(refresher), _reported(monitoring, repository) as reported:
        report = refresher.run(plan)
        reported(report.exit_code, refresh_summary(report))
    return report


def _job_settings(command: str, shard: Shard | None, dry_run: bool) -> Settings:
    """Settings for `refresh` or `cleanup`; a configuration error is recorded as a refused
    run where the database itself is configured well enough to reach."""
    from tokenrefresh.context import Context
    from tokenrefresh.errors import ConfigError

    try:
        return Settings.from_env()
    except ConfigError as error:
        if not dry_run:
            try:
                database_only = Settings.database_from_env()
            except ConfigError:
                raise error from None
            with Context(database_only) as context:
                context.record_refusal(command, shard, error)
        raise


@contextmanager
def _refusal_recorded(
    context: Context, command: str, shard: Shard | None, dry_run: bool
) -> Iterator[None]:
    """A run that a configuration error stops (exit 3) is recorded, so `status` shows it."""
    from tokenrefresh.errors import ConfigError

    try:
        yield
    except ConfigError as error:
        if not dry_run:
            context.record_refusal(command, shard, error)
        raise


@contextmanager
def _graceful_stop(refresher: Refresher) -> Iterator[None]:
    """SIGTERM/SIGINT: stop claiming, let in-flight refreshes finish and store their tokens."""
    received: list[int] = []

    def handler(number: int, _frame: object) -> None:
        received.append(number)
        refresher.request_stop(number, signal.Signals(number).name)
        if len(received) == 2:  # only async-signal-safe calls in here
            os.write(
                2,
                b"tokenrefresh: still finishing in-flight refreshes so their new tokens are "
                b"stored; SIGKILL would lose them\n",
            )

    previous = {
        number: signal.signal(number, handler) for number in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def _monitoring(
    command: str, settings: Settings, metrics_file: Path | None, window: timedelta, *, enabled: bool
) -> Monitoring | None:
    from tokenrefresh.monitoring import Monitoring

    ping_url = settings.cleanup_ping_url if command == "cleanup" else settings.ping_url
    if not enabled or (ping_url is None and metrics_file is None):
        return None
    return Monitoring(command, ping_url=ping_url, metrics_file=metrics_file, window=window)


def _observer(monitoring: Monitoring | None, *, show_progress: bool) -> RunObserver | None:
    """A progress bar on an interactive terminal; the health-check start ping, if any."""
    from tokenrefresh.refresh.observers import ProgressBar, StartHook

    on_started = monitoring.started if monitoring is not None else None
    if show_progress and sys.stderr.isatty():
        return ProgressBar(on_started)
    return StartHook(on_started) if on_started is not None else None


@contextmanager
def _reported(
    monitoring: Monitoring | None, repository: Repository
) -> Iterator[Callable[[int, str], None]]:
    """Report the run's end to the ping and the metrics file, errors included.

    A run that found the lock held reports nothing: the run holding it will.
    """
    from tokenrefresh.clock import utcnow

    def finished(exit_code: int, summary: str) -> None:
        if monitoring is not None:
            monitoring.finished(exit_code, summary, repository, utcnow())

    try:
        yield finished
    except LockHeld:
        raise
    except TokenRefreshError as error:
        finished(error.exit_code, error.message)
        raise


# ----------------------------------------------------------------------------- cleanup, status


@app.command()
@_handles_errors
def cleanup(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would change; write nothing.")
    ] = False,
    retention: Annotated[
        timedelta,
        typer.Option(
            parser=_positive_duration,
            envvar="TOKENREFRESH_RETENTION",
            metavar="DURATION",
            show_default="30d",
            help="Keep refresh attempts and runs this long.",
        ),
    ] = timedelta(days=30),
    metrics_file: MetricsFile = None,
    as_json: AsJson = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
    log_format: LogFormatOption = LogFormat.human,
) -> None:
    """Expire accounts past their refresh token's expiry, erase dead tokens, prune history."""
    _setup(verbose, quiet, log_format)
    from tokenrefresh.cleanup import Cleanup
    from tokenrefresh.context import Context
    from tokenrefresh.render import Output, cleanup_summary

    settings = _job_settings("cleanup", None, dry_run)
    monitoring = _monitoring("cleanup", settings, metrics_file, retention, enabled=not dry_run)
    with Context(settings) as context, _refusal_recorded(context, "cleanup", None, dry_run):
        repository = context.repository()
        lock = None if dry_run else context.run_lock("cleanup")
        with _reported(monitoring, repository) as reported:
            report = Cleanup(repository, lock).run(
                dry_run=dry_run,
                retention=retention,
                on_started=monitoring.started if monitoring is not None else None,
            )
            reported(report.exit_code, cleanup_summary(report))
    Output(as_json=as_json).cleanup(report, quiet=quiet)
    raise typer.Exit(report.exit_code)


@app.command()
@_handles_errors
def status(
    window: Window = timedelta(minutes=90),
    limit: Annotated[
        int, typer.Option(min=0, help="List at most this many accounts that need reconnecting.")
    ] = 50,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Health check: exit 0 healthy, 1 warning, 2 critical; one line per problem.",
        ),
    ] = False,
    max_age: Annotated[
        timedelta,
        typer.Option(
            parser=_positive_duration,
            envvar="TOKENREFRESH_MAX_AGE",
            metavar="DURATION",
            show_default="1h",
            help="With --check: the last successful refresh may be at most this old.",
        ),
    ] = timedelta(hours=1),
    as_json: AsJson = False,
) -> None:
    """Accounts by status, tokens expiring soon or overdue, reconnects needed, last runs."""
    _setup(0, False)
    from tokenrefresh.clock import utcnow
    from tokenrefresh.context import Context
    from tokenrefresh.render import Output
    from tokenrefresh.status import collect_status, health_problems

    with Context(Settings.from_env()) as context:
        report = collect_status(context.repository(), utcnow(), window, limit)
    if not check:
        Output(as_json=as_json).status(report)
        return
    problems = health_problems(report, max_age)
    Output(as_json=as_json).health(problems)
    severities = {problem.severity for problem in problems}
    raise typer.Exit(2 if "critical" in severities else 1 if severities else 0)


# ----------------------------------------------------------------------------- accounts


@accounts_app.command("import")
@_handles_errors
def accounts_import(
    file: Annotated[
        str,
        typer.Argument(metavar="[FILE|-]", help="JSON Lines file; - or nothing: standard input."),
    ] = "-",
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Import even lines whose refresh token was already used, or whose pair is "
            "older than the stored one (this replaces a newer pair).",
        ),
    ] = False,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Import accounts from JSON Lines (TikTok token response shape); all or nothing."""
    _setup(0, quiet)
    from tokenrefresh.accounts import Accounts
    from tokenrefresh.context import Context
    from tokenrefresh.render import Output

    lines = _read_lines(file)
    with Context(Settings.from_env()) as context:
        repository = context.repository()
        cipher = context.cipher(verify_with=repository)
        report = Accounts(repository).import_lines(lines, cipher, force=force)
    if not quiet or as_json:
        Output(as_json=as_json).imported(report)


def _read_lines(file: str) -> list[str]:
    """The lines of FILE or standard input; a UTF-8 byte order mark is ignored."""
    if file == "-":
        return sys.stdin.read().removeprefix("\ufeff").splitlines()
    try:
        return Path(file).read_text(encoding="utf-8-sig").splitlines()
    except OSError as error:
        raise UsageError(f"cannot read {file}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{file} is not UTF-8 text") from None


@accounts_app.command("list")
@_handles_errors
def accounts_list(
    status: Annotated[
        StatusFilter | None, typer.Option("--status", help="Only accounts with this status.")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """List accounts (never their tokens)."""
    _setup(0, False)
    from tokenrefresh.accounts import Accounts
    from tokenrefresh.clock import utcnow
    from tokenrefresh.context import Context
    from tokenrefresh.render import Output
    from tokenrefresh.storage.records import AccountStatus

    with Context(Settings.from_env()) as context:
        accounts = Accounts(context.repository()).list(
            AccountStatus(status.value) if status else None
        )
    Output(as_json=as_json).accounts(accounts, utcnow())


@accounts_app.command("show")
@_handles_errors
def accounts_show(
    account_id: Annotated[int, typer.Argument(metavar="ID")],
    attempts: Annotated[
        int, typer.Option(min=0, help="How many recent refresh attempts to show.")
    ] = 10,
    as_json: AsJson = False,
) -> None:
    """Show one account and its recent refresh attempts (never a token)."""
    _setup(0, False)
    from tokenrefresh.accounts import Accounts
    from tokenrefresh.clock import utcnow
    from tokenrefresh.context import Context
    from tokenrefresh.render import Output

    with Context(Settings.from_env()) as context:
        details = Accounts(context.repository()).details(account_id, attempts)
    Output(as_json=as_json).account_details(details, utcnow())


@accounts_app.command("token")
@_handles_errors
def accounts_token(
    account_id: Annotated[int | None, typer.Argument(metavar="[ID]")] = None,
    open_id: Annotated[
        str | None, typer.Option("--open-id", help="Find the account by open_id.")
    ] = None,
) -> None:
    """Print the account's current access token, and only it, for apps and scripts."""
    _setup(0, False)
    if (account_id is None) == (open_id is None):
        raise UsageError("give an account ID or --open-id, not both and not neither")
    from tokenrefresh.accounts import Accounts
    from tokenrefresh.context import Context

    with Context(Settings.from_env()) as context:
        repository = context.repository()
        cipher = context.cipher(verify_with=repository)
        accounts = Accounts(repository)
        token = accounts.access_token(accounts.get(account_id, open_id), cipher)
    sys.stdout.write(token + "\n")


@accounts_app.command("remove")
@_handles_errors
def accounts_remove(
    account_id: Annotated[int, typer.Argument(metavar="ID")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove an account and its tokens (its user must reconnect to come back)."""
    _setup(0, False)
    from tokenrefresh.accounts import Accounts
    from tokenrefresh.context import Context

    with Context(Settings.from_env()) as context:
        accounts = Accounts(context.repository())
        account = accounts.get(account_id)
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError("removing an account needs --yes when not run interactively")
            typer.confirm(f"Remove account {_named(account)} and its tokens?", abort=True)
        accounts.remove(account_id)
    typer.echo(f"Removed account {_named(account)}.")


def _set_enabled(account_id: int, enabled: bool) -> None:
    _setup(0, False)
    from tokenrefresh.accounts import Accounts
    from tokenrefresh.context import Context

    with Context(Settings.from_env()) as context:
        account = Accounts(context.repository()).set_enabled(account_id, enabled)
    typer.echo(f"Account {_named(account)} is {account.status}.")


@accounts_app.command("disable")
@_handles_errors
def accounts_disable(account_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Exclude an account from refreshing (status disabled)."""
    _set_enabled(account_id, False)


@accounts_app.command("enable")
@_handles_errors
def accounts_enable(account_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Make an account active again (refreshed by the next run)."""
    _set_enabled(account_id, True)


# ----------------------------------------------------------------------------- keys, db


@keys_app.command("generate")
@_handles_errors
def keys_generate() -> None:
    """Print a new Fernet key (put it first in TOKENREFRESH_ENCRYPTION_KEYS)."""
    from tokenrefresh.crypto import generate_key

    typer.echo(generate_key())


@keys_app.command("rotate")
@_handles_errors
def keys_rotate(as_json: AsJson = False, quiet: Quiet = False) -> None:
    """Re-encrypt every stored token with the first key, so older keys can be dropped."""
    _setup(0, quiet)
    from tokenrefresh.context import Context
    from tokenrefresh.keys import rotate_keys
    from tokenrefresh.render import Output

    with Context(Settings.from_env()) as context:
        cipher = context.cipher()
        report = rotate_keys(context.repository(), cipher)
    if not quiet or as_json:
        Output(as_json=as_json).rotated(report)


@keys_app.command("check")
@_handles_errors
def keys_check(as_json: AsJson = False) -> None:
    """Count stored tokens per key; exit 3 if any token cannot be decrypted."""
    _setup(0, False)
    from tokenrefresh.context import Context
    from tokenrefresh.errors import EXIT_CONFIG
    from tokenrefresh.keys import check_keys
    from tokenrefresh.render import Output

    with Context(Settings.from_env()) as context:
        cipher = context.cipher()
        report = check_keys(context.repository(), cipher)
    Output(as_json=as_json).key_check(report)
    unreadable = report.undecryptable_accounts or (
        report.check_value_key is None and any(report.tokens_by_key.values())
    )
    raise typer.Exit(EXIT_CONFIG if unreadable else 0)


@db_app.command("upgrade")
@_handles_errors
def db_upgrade(quiet: Quiet = False) -> None:
    """Create the schema or migrate it to the newest revision."""
    _setup(0, quiet)
    from tokenrefresh.context import Context
    from tokenrefresh.storage import schema
    from tokenrefresh.storage.engine import describe_url

    with Context(Settings.from_env()) as context:
        state = schema.upgrade(context.engine(check_schema=False, create=True))
        where = describe_url(context.database_url)
    if not quiet:
        if state.before == state.after:
            typer.echo(f"The schema of {where} is current (revision {state.after}).")
        else:
            typer.echo(
                f"Upgraded {where} from {state.before or 'nothing'} to revision {state.after}."
            )


@db_app.command("current")
@_handles_errors
def db_current() -> None:
    """Show the schema revision of the database and the one this version needs."""
    _setup(0, False)
    from tokenrefresh.context import Context
    from tokenrefresh.storage import schema
    from tokenrefresh.storage.engine import describe_url

    with Context(Settings.from_env()) as context:
        revision = schema.current_revision(context.engine(check_schema=False))
        where = describe_url(context.database_url)
    typer.echo(
        f"{where}: revision {revision or 'none'} (this tokenrefresh needs {schema.HEAD_REVISION})"
    )
    raise typer.Exit(0 if revision == schema.HEAD_REVISION else 3)


def main() -> None:
    """The console script."""
    app()


_ = (format_duration, EXIT_USAGE)
