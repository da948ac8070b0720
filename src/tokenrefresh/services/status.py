"""`status`: what the operator needs to know, from a handful of indexed queries."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from tokenrefresh.base import defaults
from tokenrefresh.base.apps import App
from tokenrefresh.base.clock import iso
from tokenrefresh.base.durations import format_duration
from tokenrefresh.services.refresh.apps import unconfigured
from tokenrefresh.storage.outbox import OutboxStats
from tokenrefresh.storage.records import AccountStatus, AccountView, RunView, Stats
from tokenrefresh.storage.repository import Repository

__all__ = [
    "HealthCheck",
    "HealthProblem",
    "Severity",
    "StatusReport",
    "check_health",
    "collect_status",
    "lifetime_notes",
]


@dataclass(frozen=True)
class StatusReport:
    generated_at: datetime
    window: timedelta
    stats: Stats
    reconnect: list[AccountView]
    reconnect_count: int
    last_runs: dict[str, RunView]
    last_successful_runs: dict[str, RunView]
    events: OutboxStats = field(default_factory=lambda: OutboxStats(0, None))
    delivery_configured: bool = False
    # False: no TOKENREFRESH_ENCRYPTION_KEYS, so no stored token can be read or refreshed.
    keys_configured: bool = True
    # Accounts by app and status, and which apps the configuration names (None: it could
    # not be read, `configuration_error` says why).
    apps_by_status: dict[tuple[str, str], int] = field(default_factory=dict)
    configured_apps: tuple[str, ...] | None = None
    configuration_error: str | None = None
    # What the operator must know about a configured provider's tokens (`lifetime_notes`).
    notes: tuple[str, ...] = ()

    @property
    def apps(self) -> dict[str, int]:
        """How many accounts each app holds, in any status."""
        totals: dict[str, int] = {}
        for (app, _), count in self.apps_by_status.items():
            totals[app] = totals.get(app, 0) + count
        return totals

    @property
    def unconfigured_apps(self) -> dict[str, int]:
        """The active accounts of each app the configuration does not name (none known
        while it cannot be read)."""
        if self.configured_apps is None:
            return {}
        return unconfigured(self.apps_by_status, self.configured_apps)

    @property
    def several_apps(self) -> bool:
        """Whether any app but `tiktok` holds accounts or is configured: only then do the
        reports say which app (one TikTok app's reports are what they always were)."""
        named = {*self.apps, *(self.configured_apps or ())}
        return bool(named - {defaults.APP}) or bool(self.unconfigured_apps)


# Events pending longer than this, with somewhere to deliver them, are worth a warning.
EVENTS_STUCK_AFTER = timedelta(hours=1)


def collect_status(
    repository: Repository,
    now: datetime,
    window: timedelta,
    reconnect_limit: int,
    *,
    delivery_configured: bool = False,
    keys_configured: bool = True,
    configured_apps: Collection[str] | None = None,
    configuration_error: str | None = None,
    notes: tuple[str, ...] = (),
) -> StatusReport:
    """`configured_apps`: the apps the configuration names (None: not known); the active
    accounts of any other app are not refreshed, and are named."""
    stats = repository.stats(now, window)
    return StatusReport(
        generated_at=now,
        window=window,
        stats=stats,
        reconnect=repository.reconnect_needed(now, reconnect_limit),
        # Three disjoint groups: expired; past the refresh token's expiry but not yet marked
        # by cleanup; and in date but with no token stored (nothing can refresh them).
        reconnect_count=(
            stats.by_status[AccountStatus.EXPIRED]
            + stats.past_refresh_expiry
            + stats.without_tokens
        ),
        last_runs=repository.last_runs(),
        last_successful_runs=repository.last_successful_runs(),
        events=repository.outbox_stats(),
        delivery_configured=delivery_configured,
        keys_configured=keys_configured,
        apps_by_status=repository.accounts_by_app_status(),
        configured_apps=None if configured_apps is None else tuple(sorted(configured_apps)),
        configuration_error=configuration_error,
        notes=notes,
    )


def lifetime_notes(apps: Iterable[App]) -> tuple[str, ...]:
    """For each app whose provider refreshes a token with itself (Instagram, Threads): a
    token not refreshed before it expires cannot be refreshed at all, so its user must
    connect again. Nothing for a provider with refresh tokens: their expiry is counted."""
    notes = []
    for app in apps:
        profile = app.profile
        lifetime = profile.lifetimes.access
        if profile.refresh.presents != "access_token" or lifetime is None:
            continue
        age = profile.refresh.min_age
        notes.append(
            f"app {app.name!r} ({profile.label}): a token not refreshed within "
            f"{format_duration(lifetime)} is dead, and its user must connect again; each "
            f"is refreshed {format_duration(app.refresh_window)} before it expires"
            + (f", once it is {format_duration(age)} old" if age else "")
        )
    return tuple(notes)


class Severity(StrEnum):
    """How bad a health problem is; its value is what Nagios and `--json` show."""

    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def exit_code(self) -> int:
        """The Nagios exit code: 0 ok, 1 warning, 2 critical."""
        return {Severity.OK: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}[self]


@dataclass(frozen=True)
class HealthProblem:
    severity: Severity
    message: str


@dataclass(frozen=True)
class HealthCheck:
    """What `status --check` reports: the problems, most severe first; none when healthy."""

    problems: list[HealthProblem]

    @property
    def severity(self) -> Severity:
        """The worst problem's severity (the one rule for the exit code and the output)."""
        return max(
            (problem.severity for problem in self.problems),
            key=list(Severity).index,
            default=Severity.OK,
        )


def check_health(report: StatusReport, max_age: timedelta) -> HealthCheck:
    """Critical: the refresh is not keeping up (no success within max_age, or active
    accounts whose access token already expired). Warning: users must reconnect."""
    problems: list[HealthProblem] = []
    last_ok = report.last_successful_runs.get("refresh")
    if last_ok is None:
        problems.append(HealthProblem(Severity.CRITICAL, "no refresh run has succeeded yet"))
    else:
        finished = last_ok.finished_at or last_ok.started_at
        if report.generated_at - finished > max_age:
            problems.append(
                HealthProblem(
                    Severity.CRITICAL,
                    "the last successful refresh finished at "
                    f"{iso(finished)}, more than "
                    f"{format_duration(max_age)} ago",
                )
            )
    if report.stats.overdue:
        problems.append(
            HealthProblem(
                Severity.CRITICAL,
                f"{report.stats.overdue} active account(s) have an expired access token",
            )
        )
    if report.configuration_error is not None:
        problems.append(
            HealthProblem(
                Severity.CRITICAL,
                f"the configuration cannot be read: {report.configuration_error}",
            )
        )
    for app, count in report.unconfigured_apps.items():
        problems.append(
            HealthProblem(
                Severity.WARNING,
                f"{count} active account(s) of app {app!r} are not refreshed: the "
                "configuration does not name that app",
            )
        )
    if report.reconnect_count:
        problems.append(
            HealthProblem(
                Severity.WARNING,
                f"{report.reconnect_count} account(s) need their user to reconnect",
            )
        )
    oldest = report.events.oldest_pending_at
    if (
        report.delivery_configured
        and oldest is not None
        and report.generated_at - oldest > EVENTS_STUCK_AFTER
    ):
        problems.append(
            HealthProblem(
                Severity.WARNING,
                f"{report.events.pending} event(s) not delivered; the oldest since "
                f"{iso(oldest)} (is the webhook receiver down?)",
            )
        )
    return HealthCheck(problems)
