"""`refresh`, `cleanup` and `status`: what cron runs, and what tells whether it works."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from tokenrefresh.base import defaults
from tokenrefresh.cli.options import (
    AsJson,
    EventRetention,
    HttpTimeout,
    LogFormat,
    LogFormatOption,
    MetricsFile,
    Quiet,
    Verbose,
    as_shard,
    duration_option,
    window_option,
)
from tokenrefresh.cli.root import app, handles_errors, print_error, setup
from tokenrefresh.storage.records import Shard

__all__ = ["cleanup", "refresh", "status"]


@app.command()
@handles_errors
def refresh(
    context: typer.Context,
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
            metavar="ID",
            help="Refresh exactly this account, whatever its expiry or status (repeatable).",
        ),
    ] = None,
    window: Annotated[
        timedelta,
        window_option(
            "Refresh access tokens that expire within this time. Unless given, each app's "
            "own: its `window` in TOKENREFRESH_CONFIG, else its provider's (TikTok's below)."
        ),
    ] = defaults.WINDOW,
    app_name: Annotated[
        str | None,
        typer.Option(
            "--app",
            metavar="NAME",
            help="Refresh only this app's accounts (default: every configured app).",
        ),
    ] = None,
    concurrency: Annotated[
        int,
        typer.Option(
            min=1,
            max=256,
            envvar="TOKENREFRESH_CONCURRENCY",
            metavar="N",
            help="Refreshes in flight at once.",
        ),
    ] = defaults.CONCURRENCY,
    rate_limit: Annotated[
        float | None,
        typer.Option(
            min=0.01,
            envvar="TOKENREFRESH_RATE_LIMIT",
            metavar="R",
            help="At most this many calls per second to each app's provider (default: no limit).",
        ),
    ] = None,
    max_runtime: Annotated[
        timedelta,
        duration_option(
            "Claim nothing new after this long; in-flight refreshes finish (0: no limit).",
            envvar="TOKENREFRESH_MAX_RUNTIME",
            zero_ok=True,
        ),
    ] = defaults.MAX_RUNTIME,
    shard: Annotated[
        Shard | None,
        typer.Option(
            parser=as_shard,
            envvar="TOKENREFRESH_SHARD",
            metavar="K/N",
            help="Only accounts with id mod N = K, with a lock of their own.",
        ),
    ] = None,
    http_timeout: HttpTimeout = defaults.HTTP_TIMEOUT,
    warn_before: Annotated[
        timedelta,
        duration_option(
            "Announce a refresh token this long before its own expiry "
            "(event account.refresh_token_expiring).",
            envvar="TOKENREFRESH_WARN_BEFORE",
        ),
    ] = defaults.WARN_BEFORE,
    event_retention: EventRetention = defaults.EVENT_RETENTION,
    metrics_file: MetricsFile = None,
    as_json: AsJson = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
    log_format: LogFormatOption = LogFormat.human,
) -> None:
    """Refresh every access token that expires within the window: the cron job."""
    setup(verbose, quiet, log_format is LogFormat.json)
    from tokenrefresh.render import renderer
    from tokenrefresh.services.jobs import JobOptions, refresh_job
    from tokenrefresh.services.refresh.plan import RefreshOptions

    source = context.get_parameter_source("window")  # given: on the command line or env
    given = source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")
    options = RefreshOptions(
        window=window if given else None,  # None: each app's own
        account_ids=tuple(account_id or ()),
        concurrency=concurrency,
        rate_limit=rate_limit,
        max_runtime=max_runtime or None,
        shard=shard,
        warn_before=warn_before,
        event_retention=event_retention,
    )
    job = JobOptions(dry_run, metrics_file, show_progress=not (quiet or as_json or dry_run))
    report = refresh_job(options, job, http_timeout=http_timeout, app=app_name)
    # A run that an error ended (TikTok rejected the app's credentials) says so on stderr;
    # with --json its document is printed too, as for every run that got past configuration.
    if as_json or report.error is None:
        renderer(as_json=as_json).refresh(report, quiet=quiet)
    if report.error is not None:
        print_error(report.error.message)
    raise typer.Exit(report.exit_code)


@app.command()
@handles_errors
def cleanup(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would change; write nothing.")
    ] = False,
    retention: Annotated[
        timedelta,
        duration_option(
            "Keep refresh attempts and runs this long.", envvar="TOKENREFRESH_RETENTION"
        ),
    ] = defaults.RETENTION,
    event_retention: EventRetention = defaults.EVENT_RETENTION,
    metrics_file: MetricsFile = None,
    as_json: AsJson = False,
    verbose: Verbose = 0,
    quiet: Quiet = False,
    log_format: LogFormatOption = LogFormat.human,
) -> None:
    """Expire accounts past their refresh token's expiry, erase dead tokens, prune history
    and old events."""
    setup(verbose, quiet, log_format is LogFormat.json)
    from tokenrefresh.render import renderer
    from tokenrefresh.services.jobs import JobOptions, cleanup_job

    report = cleanup_job(
        retention, JobOptions(dry_run, metrics_file), event_retention=event_retention
    )
    renderer(as_json=as_json).cleanup(report, quiet=quiet)


@app.command()
@handles_errors
def status(
    window: Annotated[
        timedelta, window_option("Count the access tokens that expire within this time.")
    ] = defaults.WINDOW,
    limit: Annotated[
        int,
        typer.Option(
            min=0, metavar="N", help="List at most this many accounts that need reconnecting."
        ),
    ] = defaults.RECONNECT_LISTED,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Health check: exit 0 healthy, 1 warning, 2 critical; one line per problem.",
        ),
    ] = False,
    max_age: Annotated[
        timedelta,
        duration_option(
            "With --check: the last successful refresh may be at most this old.",
            envvar="TOKENREFRESH_MAX_AGE",
        ),
    ] = defaults.MAX_AGE,
    as_json: AsJson = False,
) -> None:
    """Accounts by status, tokens expiring soon or overdue, reconnects needed, last runs."""
    setup()
    from tokenrefresh.adapters.context import Context
    from tokenrefresh.base.apps import load_configuration
    from tokenrefresh.base.clock import utcnow
    from tokenrefresh.base.settings import Settings
    from tokenrefresh.errors import ConfigError
    from tokenrefresh.render import renderer
    from tokenrefresh.services.events.announce import delivery_configured
    from tokenrefresh.services.status import check_health, collect_status, lifetime_notes

    settings = Settings.from_env()
    # A configuration that cannot be read is a finding of `status`, not a reason to fail it.
    configured_apps, configuration_error = None, None
    notes: tuple[str, ...] = ()
    try:
        configuration = load_configuration()
        configured_apps = tuple(configuration.apps)
        notes = lifetime_notes(configuration.apps.values())
    except ConfigError as error:
        configuration_error = error.message
    with Context(settings) as context:
        report = collect_status(
            context.repository(),
            utcnow(),
            window,
            limit,
            delivery_configured=delivery_configured(settings),
            keys_configured=bool(settings.encryption_keys),
            configured_apps=configured_apps,
            configuration_error=configuration_error,
            notes=notes,
        )
    if not check:
        renderer(as_json=as_json).status(report)
        return
    health = check_health(report, max_age)
    renderer(as_json=as_json).health(health)
    raise typer.Exit(health.severity.exit_code)
