"""What a refresh run comes to: one result per account, and the run's report."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from tokenrefresh.base.scrub import safe_text, scrub
from tokenrefresh.errors import EXIT_FAILURES, EXIT_OK, TokenRefreshError

__all__ = [
    "MAX_REPORTED_PROBLEMS",
    "RECONNECT_HOW",
    "REJECTED_WHY",
    "AccountResult",
    "PlannedRefresh",
    "Result",
    "RunReport",
    "StopReason",
]

MAX_REPORTED_PROBLEMS = 1000

# Why TikTok rejects a refresh token, and how an expired account comes back: the messages
# about expired accounts share these words (TikTok's invalid_grant does not tell the two
# causes apart).
REJECTED_WHY = "revoked access, or the token ran out: TikTok does not say which"
RECONNECT_HOW = "(`tokenrefresh accounts connect`, or `accounts import` of new tokens"


class Result(StrEnum):
    REFRESHED = "refreshed"
    EXPIRED = "expired"  # TikTok rejected the refresh token: the user must reconnect
    FAILED = "failed"  # no verdict on the token; tried again by a later run
    SKIPPED = "skipped"  # another run had it or refreshed it first; nothing to do
    LOST = "lost"  # TikTok issued a new pair that could not be stored: the user may reconnect


# The results a person must look at: listed in the report, and exit code 1.
PROBLEMS = (Result.LOST, Result.EXPIRED, Result.FAILED)


class StopReason(StrEnum):
    MAX_RUNTIME = "max_runtime"
    SIGNAL = "signal"
    CIRCUIT_BREAKER = "circuit_breaker"
    RATE_LIMITED = "rate_limited"
    DATABASE_ERROR = "database_error"
    LOCK_LOST = "lock_lost"
    CLIENT_REJECTED = "client_rejected"  # TikTok rejected the app's credentials (exit 3)
    ERROR = "error"  # anything else that ended the run (its exit code is the error's)


@dataclass(frozen=True)
class AccountResult:
    """How one account's refresh ended."""

    account_id: int
    open_id: str
    result: Result
    detail: str | None = None
    access_expires_at: datetime | None = None


@dataclass(frozen=True)
class PlannedRefresh:
    """What a dry run would refresh, and why."""

    account_id: int
    open_id: str
    label: str | None
    access_expires_at: datetime
    reason: str


@dataclass
class RunReport:
    """What a run did: counts, the accounts that need attention, and why it stopped."""

    dry_run: bool
    started_at: datetime
    finished_at: datetime | None = None
    run_id: int | None = None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(Result, 0))
    problems: list[AccountResult] = field(default_factory=list)
    problems_not_listed: int = 0
    planned: list[PlannedRefresh] = field(default_factory=list)
    stop_reason: StopReason | None = None
    stop_message: str | None = None
    left_due: int | None = None
    signal_number: int | None = None
    duration_seconds: float = 0.0
    error: TokenRefreshError | None = None  # what ended the run, with its own exit code
    # Active accounts of apps the configuration does not name, by app: not refreshed.
    unconfigured_apps: dict[str, int] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        if self.error is not None:
            return self.error.exit_code
        if self.signal_number is not None:
            return 128 + self.signal_number
        if any(self.counts[result] for result in PROBLEMS) or self.stop_reason:
            return EXIT_FAILURES
        return EXIT_OK

    @property
    def outcome(self) -> str:
        if self.stop_reason:
            return "stopped"
        return "ok" if self.exit_code == EXIT_OK else "failures"

    @property
    def summary(self) -> str:
        """One line for a health-check ping or a log: counts, exit code, why it stopped."""
        counts = ", ".join(f"{name} {count}" for name, count in self.counts.items())
        text = f"{counts} (exit {self.exit_code})"
        if self.stop_message:
            text += f"; stopped: {safe_text(scrub(self.stop_message), 2000)}"
        return text

    def add(self, result: AccountResult) -> None:
        self.counts[result.result] += 1
        if result.result in PROBLEMS:
            if len(self.problems) < MAX_REPORTED_PROBLEMS:
                self.problems.append(result)
            else:
                self.problems_not_listed += 1
