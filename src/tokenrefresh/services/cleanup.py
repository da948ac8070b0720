"""`cleanup`: expire accounts whose refresh token ran out, erase dead tokens, prune history."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tokenrefresh.adapters.locks import RunLock
from tokenrefresh.base import defaults
from tokenrefresh.base.clock import Clock, utcnow
from tokenrefresh.base.logs import set_run_id
from tokenrefresh.errors import EXIT_OK, TokenRefreshError
from tokenrefresh.storage.records import AccountView
from tokenrefresh.storage.repository import Repository

__all__ = ["Cleanup", "CleanupReport"]

MAX_LISTED = 1000


@dataclass
class CleanupReport:
    dry_run: bool
    started_at: datetime
    retention: timedelta
    event_retention: timedelta = defaults.EVENT_RETENTION
    expired: list[AccountView] = field(default_factory=list)
    expired_count: int = 0
    tokens_erased: int = 0
    attempts_pruned: int = 0
    runs_pruned: int = 0
    events_pruned: int = 0  # delivered, or given up, longer ago than the event retention
    run_id: int | None = None
    finished_at: datetime | None = None

    @property
    def counts(self) -> dict[str, int]:
        return {
            "expired": self.expired_count,
            "tokens_erased": self.tokens_erased,
            "attempts_pruned": self.attempts_pruned,
            "runs_pruned": self.runs_pruned,
            "events_pruned": self.events_pruned,
        }

    @property
    def summary(self) -> str:
        """One line for the cleanup's ping: a cleanup that returns at all exits 0."""
        counts = ", ".join(
            f"{name.replace('_', ' ')} {count}" for name, count in self.counts.items()
        )
        return f"{counts} (exit 0)"


class Cleanup:
    """The `cleanup` service: `preview` counts what `run` would change."""

    def __init__(
        self,
        repository: Repository,
        clock: Clock = utcnow,
        *,
        apps: Collection[str] | None = None,
    ) -> None:
        """`apps`: the configured apps; an account of any other is never expired here."""
        self._repository = repository
        self._clock = clock
        self._apps = apps

    def preview(
        self, retention: timedelta, event_retention: timedelta = defaults.EVENT_RETENTION
    ) -> CleanupReport:
        """The dry run: what would change, with no lock and no write."""
        report = self._started(True, retention, event_retention)
        now, repository = report.started_at, self._repository
        report.expired_count = len(report.expired)
        report.tokens_erased = repository.count_tokens_to_erase(now, self._apps)
        report.attempts_pruned, report.runs_pruned = repository.count_history_before(
            now - retention
        )
        report.events_pruned = repository.count_events_before(now - event_retention)
        report.finished_at = self._clock()
        return report

    def run(
        self,
        lock: RunLock,
        retention: timedelta,
        on_started: Callable[[], None] | None = None,
        event_retention: timedelta = defaults.EVENT_RETENTION,
    ) -> CleanupReport:
        """Expire, erase and prune under the cleanup lock; the run is recorded."""
        report = self._started(False, retention, event_retention)
        now, repository = report.started_at, self._repository
        with lock:
            report.run_id = repository.start_run(
                "cleanup", host=socket.gethostname(), pid=os.getpid(), shard=None
            )
            set_run_id(report.run_id)
            if on_started is not None:
                on_started()
            try:
                report.expired_count = repository.expire_past_refresh_expiry(now, self._apps)
                report.tokens_erased = repository.erase_dead_tokens(now)
                report.attempts_pruned, report.runs_pruned = repository.prune_history(
                    now - retention
                )
                report.events_pruned = repository.prune_events(now - event_retention, now)
            except TokenRefreshError as error:
                repository.finish_run(
                    report.run_id,
                    outcome="error",
                    exit_code=error.exit_code,
                    counts=report.counts,
                    message=error.message,
                )
                raise
            report.finished_at = self._clock()
            repository.finish_run(
                report.run_id, outcome="ok", exit_code=EXIT_OK, counts=report.counts, message=None
            )
        return report

    def _started(
        self, dry_run: bool, retention: timedelta, event_retention: timedelta
    ) -> CleanupReport:
        """The report of a run starting now, with the accounts past their refresh expiry
        (at most MAX_LISTED), which a run expires and a dry run lists."""
        now = self._clock()
        report = CleanupReport(
            dry_run=dry_run, started_at=now, retention=retention, event_retention=event_retention
        )
        report.expired = self._repository.past_refresh_expiry(now, MAX_LISTED, self._apps)
        return report
