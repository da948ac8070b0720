"""`status`: what the operator needs to know, from a handful of indexed queries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from tokenrefresh.durations import format_duration
from tokenrefresh.storage.records import AccountStatus, AccountView, RunView, Stats
from tokenrefresh.storage.repository import Repository

__all__ = ["HealthProblem", "StatusReport", "collect_status", "health_problems"]


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
    )


@dataclass(frozen=True)
class HealthProblem:
    severity: str  # "critical" | "warning"
    message: str


def health_problems(report: StatusReport, max_age: timedelta) -> list[HealthProblem]:
    """What `status --check` reports, most severe first; empty when healthy.

    Critical: the refresh is not keeping up (no success within max_age, or active accounts
    whose access token already expired). Warning: users must reconnect their accounts.
    """
    problems: list[HealthProblem] = []
    last_ok = report.last_successful_runs.get("refresh")
    if last_ok is None:
        problems.append(HealthProblem("critical", "no refresh run has succeeded yet"))
    else:
        finished = last_ok.finished_at or last_ok.started_at
        if report.generated_at - finished > max_age:
            problems.append(
                HealthProblem(
                    "critical",
                    "the last successful refresh finished at "
                    f"{finished.isoformat(timespec='seconds')}, more than "
                    f"{format_duration(max_age)} ago",
                )
            )
    if report.stats.overdue:
        problems.append(
            HealthProblem(
                "critical",
                f"{report.stats.overdue} active account(s) have an expired access token",
            )
        )
    if report.reconnect_count:
        problems.append(
            HealthProblem(
                "warning",
                f"{report.reconnect_count} account(s) need their user to reconnect",
            )
        )
    return problems
