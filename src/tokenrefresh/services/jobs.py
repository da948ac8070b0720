"""The two jobs cron runs, `refresh` and `cleanup`, with everything around them: the
database and its lock, signals, the health-check pings and the metrics file, and a record
of the runs that their configuration stopped.

The CLI hands over options and gets a report back; nothing here prints.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from tokenrefresh.adapters.context import Context
from tokenrefresh.base import defaults
from tokenrefresh.base.apps import ENVIRONMENT, App, load_configuration
from tokenrefresh.base.clock import utcnow
from tokenrefresh.base.settings import Settings
from tokenrefresh.errors import ConfigError, LockHeld, TokenRefreshError
from tokenrefresh.services.cleanup import Cleanup, CleanupReport
from tokenrefresh.services.events.announce import deliver_pending, notice_expiring
from tokenrefresh.services.refresh.apps import (
    AppPlan,
    app_names,
    app_plans,
    chosen_apps,
    unconfigured_apps,
)
from tokenrefresh.services.refresh.observers import ProgressBar, RunObserver, StartHook
from tokenrefresh.services.refresh.plan import RefreshOptions
from tokenrefresh.services.refresh.report import RunReport
from tokenrefresh.services.refresh.run import AppRun, Refresher
from tokenrefresh.storage.history import counts_as_success
from tokenrefresh.storage.records import Shard
from tokenrefresh.storage.repository import Repository

if TYPE_CHECKING:
    from tokenrefresh.services.monitoring import Monitoring

__all__ = ["MAX_RUN_CONNECTIONS", "JobOptions", "cleanup_job", "refresh_job", "run_pool_size"]

log = logging.getLogger("tokenrefresh.refresh")


@dataclass(frozen=True)
class JobOptions:
    """What both jobs take besides their own options."""

    dry_run: bool = False
    metrics_file: Path | None = None
    show_progress: bool = False  # a progress bar on stderr, if that is a terminal


# A worker holds a connection only for its short claim and write transactions, never across
# a call to TikTok, so a handful serve any --concurrency: the run then needs at most
# MAX_RUN_CONNECTIONS in all (the workers' share, one to read the due accounts, one for the
# lock), whatever --concurrency is. Managed PostgreSQL often caps connections at 100.
MAX_RUN_CONNECTIONS = 8


def run_pool_size(concurrency: int) -> int:
    """The connections a refresh run may hold at once: at most MAX_RUN_CONNECTIONS."""
    return min(concurrency + 2, MAX_RUN_CONNECTIONS)


def refresh_job(
    options: RefreshOptions, job: JobOptions, *, http_timeout: float, app: str | None = None
) -> RunReport:
    """`tokenrefresh refresh`: the dry run, or the run with its lock, signals and pings;
    over every configured app, or the one named `app`."""
    settings = _settings("refresh", options.shard, job.dry_run)
    window = defaults.WINDOW if options.window is None else options.window
    monitoring = _monitoring("refresh", settings, job, window)
    with (
        Context(settings, pool_size=run_pool_size(options.concurrency)) as context,
        _refusal_recorded(context, "refresh", options.shard, job.dry_run),
    ):
        configuration = load_configuration()
        apps = chosen_apps(configuration, app)
        repository = context.repository()
        cipher = context.cipher(verify_with=repository)
        # A dry run checks that the credentials are there, but never needs the HTTP stack.
        _require_credentials(settings, apps)
        plans = app_plans(repository, options, configuration, apps)
        unconfigured = unconfigured_apps(repository, configuration) if app is None else {}
        for name, count in unconfigured.items():
            log.warning(
                "%d active account(s) of app %r are not refreshed: the configuration does "
                "not name that app",
                count,
                name,
            )
        if job.dry_run:
            report = _dry_run(plans)
            report.unconfigured_apps = unconfigured
            return report
        parts = [
            AppRun(
                each.plan,
                context.client_for(each.app, read_timeout=http_timeout),
                app_names(each.app),
            )
            for each in plans
        ]
        # On PostgreSQL a run for named accounts needs no run lock: its leases keep it apart
        # from a cron run over the same accounts, which it must not wait for.
        needs_lock = not (options.account_ids and context.holds_row_locks)
        lock = context.run_lock("refresh", options.shard) if needs_lock else None
        observer = _observer(monitoring, show_progress=job.show_progress)
        refresher = Refresher(repository, cipher, None, lock, observer=observer)
        with _graceful_stop(refresher, monitoring), _reported(monitoring, repository) as reported:
            report = refresher.run(parts)
            report.unconfigured_apps = unconfigured
            reported(report.exit_code, report.summary, _counts_as_success(report))
        if report.run_id is not None:  # the run took place: announce what changed
            notice_expiring(repository, options.warn_before, options.shard)
            deliver_pending(settings, repository, retention=options.event_retention)
        return report


def cleanup_job(
    retention: timedelta,
    job: JobOptions,
    *,
    event_retention: timedelta = defaults.EVENT_RETENTION,
) -> CleanupReport:
    """`tokenrefresh cleanup`: the preview, or the run under the cleanup lock."""
    settings = _settings("cleanup", None, job.dry_run)
    monitoring = _monitoring("cleanup", settings, job, retention)
    with Context(settings) as context, _refusal_recorded(context, "cleanup", None, job.dry_run):
        cleanup = Cleanup(context.repository(), apps=tuple(load_configuration().apps))
        if job.dry_run:
            return cleanup.preview(retention, event_retention)
        with _reported(monitoring, context.repository()) as reported:
            report = cleanup.run(
                context.run_lock("cleanup"),
                retention,
                on_started=monitoring.started if monitoring is not None else None,
                event_retention=event_retention,
            )
            reported(0, report.summary, None)
        deliver_pending(settings, context.repository(), retention=event_retention)
        return report


def _require_credentials(settings: Settings, apps: list[App]) -> None:
    """Every app's credentials are there (ConfigError naming what is missing, and where)."""
    for app in apps:
        if app.source == ENVIRONMENT:
            settings.require_client_credentials()
        else:
            app.credentials()


def _dry_run(plans: list[AppPlan]) -> RunReport:
    """What a run would refresh: every app's plan, most urgent first."""
    report, *others = [each.plan.dry_run() for each in plans]  # a plan per app, at least one
    if others:
        for other in others:
            report.planned.extend(other.planned)
        report.planned.sort(key=lambda planned: (planned.access_expires_at, planned.account_id))
    return report


def _counts_as_success(report: RunReport) -> bool:
    """The ping's verdict on a refresh run: the rule of "the last successful run" (`status`,
    the metrics), so a run whose only problem is users to reconnect pings success, though
    it exits 1 (the users are a warning, never a failed run)."""
    if report.error is not None or report.signal_number is not None:
        return False
    counts = {str(result): count for result, count in report.counts.items()}
    return counts_as_success("refresh", report.outcome, counts)


def _settings(command: str, shard: Shard | None, dry_run: bool) -> Settings:
    """The job's settings; a configuration error is recorded as a refused run wherever the
    database itself is configured well enough to reach."""
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
    try:
        yield
    except ConfigError as error:
        if not dry_run:
            context.record_refusal(command, shard, error)
        raise


@contextmanager
def _graceful_stop(refresher: Refresher, monitoring: Monitoring | None) -> Iterator[None]:
    """SIGTERM/SIGINT: stop claiming, let in-flight refreshes finish and store their tokens;
    a health-check ping in progress ends at once."""
    received: list[int] = []

    def handler(number: int, _frame: object) -> None:
        received.append(number)
        refresher.request_stop(number, signal.Signals(number).name)
        if monitoring is not None:
            monitoring.cancel()
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
    command: str, settings: Settings, job: JobOptions, window: timedelta
) -> Monitoring | None:
    """The job's ping and metrics file, if any is configured (never for a dry run)."""
    from tokenrefresh.services.monitoring import Monitoring

    ping_url = settings.cleanup_ping_url if command == "cleanup" else settings.ping_url
    if job.dry_run or (ping_url is None and job.metrics_file is None):
        return None
    return Monitoring(command, ping_url=ping_url, metrics_file=job.metrics_file, window=window)


def _observer(monitoring: Monitoring | None, *, show_progress: bool) -> RunObserver | None:
    """A progress bar on an interactive terminal; the health-check start ping, if any."""
    on_started = monitoring.started if monitoring is not None else None
    if show_progress and sys.stderr.isatty():
        return ProgressBar(on_started)
    return StartHook(on_started) if on_started is not None else None


@contextmanager
def _reported(
    monitoring: Monitoring | None, repository: Repository
) -> Iterator[Callable[[int, str, bool | None], None]]:
    """Report the run's end to the ping and the metrics file, errors included: the ping
    says success for a run that counts as one (`_counts_as_success`), else exit 0.

    A run that found the lock held reports nothing: the run holding it will.
    """

    def finished(exit_code: int, summary: str, success: bool | None = None) -> None:
        if monitoring is not None:
            monitoring.finished(exit_code, summary, repository, utcnow(), success=success)

    try:
        yield finished
    except LockHeld:
        raise
    except TokenRefreshError as error:
        finished(error.exit_code, error.message)
        raise
