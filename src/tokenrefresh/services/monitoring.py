"""What a run tells the outside world: a dead-man's-switch ping and a Prometheus metrics file.

Both are best effort: a ping or a metrics file that cannot be written is logged, and never
changes the outcome or exit code of the run it reports on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import threading
from datetime import datetime, timedelta
from pathlib import Path

from tokenrefresh.adapters.outbound.call import BoundedClient, CallFailed
from tokenrefresh.base.envfile import file_kind
from tokenrefresh.base.scrub import safe_text, scrub
from tokenrefresh.base.settings import Secret
from tokenrefresh.errors import TokenRefreshError
from tokenrefresh.services.status import collect_status
from tokenrefresh.storage.records import AccountStatus
from tokenrefresh.storage.repository import Repository

__all__ = ["Monitoring", "Pinger", "write_metrics"]

log = logging.getLogger("tokenrefresh.monitoring")  # the name logs have always shown

PING_TIMEOUT = 10.0  # seconds for a whole ping, connect to last byte of the answer's head
PING_CONNECT_TIMEOUT = 3.0
STOPPING_PING_TIMEOUT = 3.0  # seconds for a ping once a stop (SIGTERM, SIGINT) was asked


class Pinger:
    """healthchecks.io-style pings: URL/start, then URL (success) or URL/fail, with a body.

    Each ping is one bounded call (`outbound`): at most PING_TIMEOUT seconds in all, however
    the answer trickles, and not a byte of the answer's body read (only its status counts),
    so no ping server can hold a run or its lock. `cancel()` ends a ping in progress at once
    (a signal arrived) and bounds the later ones by STOPPING_PING_TIMEOUT. The URL
    identifies the check: it is never logged.
    """

    def __init__(self, url: Secret) -> None:
        self._url = url
        self._http = BoundedClient(
            timeout=PING_TIMEOUT, connect_timeout=PING_CONNECT_TIMEOUT, max_body_bytes=0
        )
        self._stopping = False

    def start(self) -> None:
        self._ping("/start", "")

    def finish(self, success: bool, summary: str) -> None:
        """The one-line summary as the body: scrubbed of every secret, no control characters
        (it can quote TikTok's text, through a stop message)."""
        self._ping("" if success else "/fail", safe_text(scrub(summary), 2000))

    def cancel(self) -> None:
        """A stop was asked: end the ping in progress now. Safe in a signal handler."""
        self._stopping = True
        self._http.cancel()

    def close(self) -> None:
        self._http.close()

    def _ping(self, suffix: str, body: str) -> None:
        stopping = self._stopping
        timeout = STOPPING_PING_TIMEOUT if stopping else PING_TIMEOUT
        try:
            answer = self._http.post(
                self._url.reveal() + suffix,
                body.encode("utf-8"),
                {"Content-Type": "text/plain; charset=utf-8"},
                timeout=timeout,
            )
        except CallFailed as failure:
            if not failure.timed_out:
                why = failure.cause
            elif self._stopping and not stopping:
                why = "cut short: the run is stopping"
            else:
                why = f"no answer within {timeout:g} s"
            log.warning("the health-check ping failed (%s); the run is not affected", why)
            return
        if answer.status >= 300:
            log.warning(
                "the health-check ping was answered with HTTP %s; the run is not affected",
                answer.status,
            )


def write_metrics(
    path: Path, command: str, repository: Repository, now: datetime, window: timedelta
) -> None:
    """Prometheus text format, written atomically (a temp file beside it, then a rename).

    Everything comes from the database (the runs table and the accounts), so the file
    tells the same story as `status`, whatever happened in this process.
    """
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    status = collect_status(
        repository, now, window, reconnect_limit=0, configured_apps=_configured_apps()
    )
    registry = CollectorRegistry()

    def gauge(name: str, help_text: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(f"tokenrefresh_{name}", help_text, labels, registry=registry)

    run = status.last_runs.get(command)
    success = status.last_successful_runs.get(command)
    if run is not None:
        gauge("last_run_timestamp_seconds", "When the last run started.", ("command",)).labels(
            command
        ).set(run.started_at.timestamp())
        if run.finished_at is not None:
            gauge("last_run_duration_seconds", "How long the last run took.", ("command",)).labels(
                command
            ).set((run.finished_at - run.started_at).total_seconds())
        if run.exit_code is not None:
            gauge("last_run_exit_code", "Exit code of the last run.", ("command",)).labels(
                command
            ).set(run.exit_code)
        outcomes = gauge(
            "last_run_accounts", "Accounts by result in the last run.", ("command", "result")
        )
        for result, count in sorted(run.counts.items()):
            outcomes.labels(command, result).set(count)
    if success is not None:
        gauge(
            "last_success_timestamp_seconds",
            "When the last successful run finished.",
            ("command",),
        ).labels(command).set((success.finished_at or success.started_at).timestamp())
    if command == "refresh":  # the cleanup's file repeats no series of the refresh's
        events = status.events
        gauge("events_pending", "Events recorded and not delivered yet.").set(events.pending)
        if events.oldest_pending_at is not None:
            gauge(
                "events_oldest_pending_age_seconds",
                "How long the oldest pending event has waited.",
            ).set(max(0.0, (now - events.oldest_pending_at).total_seconds()))
        stats = status.stats
        accounts = gauge("accounts", "Accounts by status.", ("status",))
        for account_status, count in stats.by_status.items():
            accounts.labels(account_status).set(count)
        # By app as well, in series of their own, once any app but `tiktok` is in play
        # (`accounts` keeps the series it had).
        if status.several_apps:
            by_app = gauge("app_accounts", "Accounts by app and status.", ("app", "status"))
            for app in sorted(status.apps):
                for account_status in AccountStatus:
                    by_app.labels(app, account_status.value).set(
                        status.apps_by_status.get((app, account_status.value), 0)
                    )
        if status.unconfigured_apps:
            unconfigured = gauge(
                "unconfigured_app_accounts",
                "Active accounts of an app the configuration does not name: not refreshed.",
                ("app",),
            )
            for app, count in status.unconfigured_apps.items():
                unconfigured.labels(app).set(count)
        gauge(
            "access_tokens_expiring_within_window",
            "Active accounts whose access token expires within the refresh window.",
        ).set(stats.expiring_within_window)
        gauge(
            "access_tokens_overdue", "Active accounts whose access token has already expired."
        ).set(stats.overdue)
        gauge("accounts_failing", "Active accounts whose last refresh failed.").set(stats.failing)
        if stats.soonest_access_expiry is not None:
            gauge(
                "soonest_access_token_expiry_timestamp_seconds",
                "The soonest access token expiry among active accounts.",
            ).set(stats.soonest_access_expiry.timestamp())
        if stats.soonest_refresh_expiry is not None:
            gauge(
                "soonest_refresh_token_expiry_timestamp_seconds",
                "The soonest refresh token expiry among active accounts.",
            ).set(stats.soonest_refresh_expiry.timestamp())
    write_atomically(path, generate_latest(registry))


def _configured_apps() -> tuple[str, ...] | None:
    """The apps the configuration names (None: it cannot be read; `status` says why)."""
    from tokenrefresh.base.apps import load_configuration

    try:
        return tuple(load_configuration().apps)
    except TokenRefreshError:
        return None


class MetricsPathRefused(OSError):
    """The metrics file's path is not a regular file, nor a new name in an existing folder."""


def write_atomically(path: Path, data: bytes) -> None:
    """`data` as the file at `path`: a new file beside it, then a rename over it. Only a
    regular file, or a new name in an existing folder, is written: a symlink, device,
    FIFO, socket or directory there is refused (MetricsPathRefused), never replaced."""
    problem = _path_problem(path)
    if problem:
        raise MetricsPathRefused(
            f"{problem}; only a regular file, or a new file in an existing folder, is written"
        )
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    descriptor = os.open(temporary, flags, 0o644)
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(data)
        temporary.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def _path_problem(path: Path) -> str | None:
    """What is at `path` that must not be replaced, in words; None for a regular file or
    a new name in an existing folder."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return None if path.parent.is_dir() else "its folder does not exist"
    except OSError as error:
        return f"it cannot be looked at ({error.strerror or type(error).__name__})"
    if stat.S_ISREG(mode):
        return None
    return f"it is {file_kind(mode)}"


class Monitoring:
    """The ping and the metrics file of one `refresh` or `cleanup` invocation."""

    def __init__(
        self,
        command: str,
        *,
        ping_url: Secret | None,
        metrics_file: Path | None,
        window: timedelta,
    ) -> None:
        self._command = command
        self._pinger = Pinger(ping_url) if ping_url is not None else None
        self._metrics_file = metrics_file
        self._window = window

    def started(self) -> None:
        if self._pinger is not None:
            self._pinger.start()

    def cancel(self) -> None:
        """A stop was asked: a ping in progress ends now. Safe in a signal handler."""
        if self._pinger is not None:
            self._pinger.cancel()

    def finished(
        self,
        exit_code: int,
        summary: str,
        repository: Repository | None,
        now: datetime,
        *,
        success: bool | None = None,
    ) -> None:
        """Write the metrics file and ping the end: success if `success` says so (a refresh
        whose only problem is users to reconnect), else if the exit code is 0."""
        if self._metrics_file is not None and repository is not None:
            try:
                write_metrics(self._metrics_file, self._command, repository, now, self._window)
            except Exception as error:
                log.error("could not write the metrics file %s: %s", self._metrics_file, error)
        if self._pinger is not None:
            self._pinger.finish(
                exit_code == 0 if success is None else success,
                f"{self._command} on {socket.gethostname()}: {summary}",
            )
            self._pinger.close()
