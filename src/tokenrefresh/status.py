"""`status`: what the operator needs to know, from a handful of indexed queries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from tokenrefresh.storage.models import AccountStatus
from tokenrefresh.storage.records import AccountView, RunView, Stats
from tokenrefresh.storage.repository import Repository

__all__ = ["StatusReport", "collect_status", "health_problems"]


@dataclass(frozen=True)
class StatusReport:
    generated_at: datetime
    window: timedelta
    stats: Stats
    reconnect: list[AccountView]
    reconnect_count: int
    last_runs: dict[str, RunView]
    last_successful_runs: dict[str, RunView]


def collect_status(
    repository: Repository, now: datetime, window: timedelta, reconnect_limit: int
) -> StatusReport:
    stats = repository.stats(now, window)
    return StatusReport(
        generated_at=now,
        window=window,
        stats=stats,
        reconnect=repository.list_accounts(AccountStatus.EXPIRED.value, reconnect_limit),
        reconnect_count=stats.by_status[AccountStatus.EXPIRED],
        last_runs=repository.last_runs(),
        last_successful_runs=repository.last_successful_runs(),
    )


def health_problems(report: StatusReport, max_age: timedelta) -> list[str]:
    """One line per problem `status --check` reports; empty when healthy."""
    problems: list[str] = []
    last_ok = report.last_successful_runs.get("refresh")
    if last_ok is None:
        problems.append("no refresh run has succeeded yet")
    elif report.generated_at - (last_ok.finished_at or last_ok.started_at) > max_age:
        problems.append(
            "the last successful refresh finished at "
            f"{(last_ok.finished_at or last_ok.started_at).isoformat(timespec='seconds')}, "
            f"more than {_hours(max_age)} ago"
        )
    if report.stats.overdue:
        problems.append(
            f"{report.stats.overdue} active account(s) have an expired access token (overdue)"
        )
    if report.reconnect_count:
        problems.append(
            f"{report.reconnect_count} account(s) need their user to reconnect (status expired)"
        )
    return problems


def _hours(value: timedelta) -> str:
    from tokenrefresh.durations import format_duration

    return format_duration(value)
