"""Which accounts a refresh run takes, most urgent first; and the dry run, which only says.

No TikTok client and no lock here: a plan reads, it never writes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta

from tokenrefresh.base import defaults
from tokenrefresh.base.clock import Clock, utcnow
from tokenrefresh.base.durations import format_duration
from tokenrefresh.errors import AccountNotFound, DatabaseError
from tokenrefresh.services.refresh.report import PlannedRefresh, RunReport
from tokenrefresh.storage.records import Candidate, Due, Shard
from tokenrefresh.storage.repository import Repository

__all__ = ["BATCH_SIZE", "Plan", "RefreshOptions"]

log = logging.getLogger("tokenrefresh.refresh")

BATCH_SIZE = 1000  # due accounts read at once: a few hundred kB, 10 queries for 10,000


@dataclass(frozen=True)
class RefreshOptions:
    window: timedelta | None = None  # None: each app's own (its profile's, or its override)
    account_ids: tuple[int, ...] = ()
    concurrency: int = defaults.CONCURRENCY
    rate_limit: float | None = None
    max_runtime: timedelta | None = defaults.MAX_RUNTIME
    shard: Shard | None = None
    batch_size: int = BATCH_SIZE
    warn_before: timedelta = defaults.WARN_BEFORE  # account.refresh_token_expiring
    event_retention: timedelta = defaults.EVENT_RETENTION  # undelivered events given up
    # One app's part of a run: its accounts only (None: every app's, for a caller that
    # presents each to its own app), refreshed only once `min_age` old (Instagram: 24 h).
    app: str | None = None
    min_age: timedelta = timedelta(0)


def _never() -> bool:
    return False


class Plan:
    """The accounts of one run: those due now (or exactly the ones named), in order."""

    def __init__(
        self, repository: Repository, options: RefreshOptions, clock: Clock = utcnow
    ) -> None:
        # An id given twice is refreshed once: a second worker would spend the token again.
        self.options = replace(options, account_ids=tuple(dict.fromkeys(options.account_ids)))
        self.app = options.app
        self.window = defaults.WINDOW if options.window is None else options.window
        now, min_age = clock(), options.min_age
        self.due = Due(
            now=now,
            horizon=now + self.window,
            shard=options.shard,
            app=options.app,
            issued_before=now - min_age if min_age > timedelta(0) else None,
        )
        self.explicit = bool(self.options.account_ids)
        self._repository = repository
        self._clock = clock
        if self.explicit:
            self._check_accounts_exist()

    @property
    def claim_rule(self) -> Due | None:
        """What a claim re-checks under its lock: the due rule, or nothing for named ones."""
        return None if self.explicit else self.due

    def candidates(self, stopping: Callable[[], bool] = _never) -> Iterator[Candidate]:
        """The accounts to try, streamed in batches; stops reading once `stopping`."""
        if self.explicit:
            yield from self._repository.candidates(self.options.account_ids)
            return
        for batch in self._repository.due_batches(self.due, self.options.batch_size):
            yield from batch
            if stopping():
                return

    def count(self) -> int | None:
        """How many accounts the run will try (None if the count failed: only shown)."""
        if self.explicit:
            return len(self.options.account_ids)
        return self.count_due()

    def count_due(self) -> int | None:
        try:
            return self._repository.count_due(self.due)
        except DatabaseError as error:
            log.warning("could not count the due accounts: %s", error)
            return None

    def dry_run(self) -> RunReport:
        """What a run would refresh, and why; no call to TikTok, nothing written."""
        report = RunReport(dry_run=True, started_at=self.due.now)
        for candidate in self.candidates():
            report.planned.append(
                PlannedRefresh(
                    account_id=candidate.id,
                    open_id=candidate.open_id,
                    label=candidate.label,
                    access_expires_at=candidate.access_expires_at,
                    reason=self._why(candidate),
                )
            )
        report.finished_at = self._clock()
        return report

    def _check_accounts_exist(self) -> None:
        account_ids = self.options.account_ids
        missing = sorted(set(account_ids) - self._repository.existing_ids(account_ids))
        if missing:
            listed = ", ".join(str(account_id) for account_id in missing)
            raise AccountNotFound(
                f"no account with id {listed}"
                if len(missing) == 1
                else f"no accounts with ids {listed}",
                account_id=missing[0] if len(missing) == 1 else None,
            )

    def _why(self, candidate: Candidate) -> str:
        if self.explicit:
            return f"requested with --account-id (status {candidate.status})"
        left = candidate.access_expires_at - self.due.now
        if left <= timedelta(0):
            return f"access token expired {format_duration(_whole_seconds(-left))} ago"
        return f"access token expires in {format_duration(_whole_seconds(left))}"


def _whole_seconds(value: timedelta) -> timedelta:
    return timedelta(seconds=int(value.total_seconds()))
