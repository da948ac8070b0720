"""History: the runs of `refresh` and `cleanup`, the attempts of each account, and pruning."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, func, insert, select, update

from tokenrefresh.base.events.records import EventType
from tokenrefresh.errors import EXIT_CONFIG, EXIT_FAILURES
from tokenrefresh.storage.database import Database
from tokenrefresh.storage.models import Attempt, Run, SpentRefreshToken
from tokenrefresh.storage.outbox import record_event
from tokenrefresh.storage.records import AttemptView, RunView
from tokenrefresh.storage.sql import (
    ATTEMPT_COLUMNS,
    RUN_COLUMNS,
    attempt_view,
    prunable_run_conditions,
    run_view,
    stored_text,
)

__all__ = ["RUN_LEVEL_FAILURES", "SPENT_TOKEN_RETENTION", "HistoryQueries", "counts_as_success"]

# Outcomes of a run that failed as a whole (not because some accounts failed).
RUN_LEVEL_FAILURES = ("stopped", "error", "config_error")

# Longer than the longest refresh token lifetime TikTok has documented (365 days).
SPENT_TOKEN_RETENTION = timedelta(days=400)


class HistoryQueries(Database):
    """What happened: runs, refresh attempts; and forgetting them after the retention."""

    def recent_attempts(self, account_id: int, limit: int) -> list[AttemptView]:
        query = (
            select(*ATTEMPT_COLUMNS)
            .where(Attempt.account_id == account_id)
            .order_by(Attempt.attempted_at.desc(), Attempt.id.desc())
            .limit(limit)
        )
        return [attempt_view(row) for row in self.rows(query)]

    def count_history_before(self, cutoff: datetime) -> tuple[int, int]:
        def read(connection: Connection) -> tuple[int, int]:
            attempts = connection.execute(
                select(func.count()).select_from(Attempt).where(Attempt.attempted_at < cutoff)
            ).scalar_one()
            runs = connection.execute(
                select(func.count()).select_from(Run).where(*prunable_run_conditions(cutoff))
            ).scalar_one()
            return int(attempts), int(runs)

        return self.read(read)

    def prune_history(self, cutoff: datetime) -> tuple[int, int]:
        """Delete attempts and finished runs before cutoff; each command's last run stays.

        Spent-token fingerprints go after SPENT_TOKEN_RETENTION, whatever the cutoff: an
        import file older than that holds tokens long past any refresh token's lifetime.
        """
        spent_cutoff = self.clock() - SPENT_TOKEN_RETENTION

        def write(connection: Connection) -> tuple[int, int]:
            attempts = connection.execute(delete(Attempt).where(Attempt.attempted_at < cutoff))
            runs = connection.execute(delete(Run).where(*prunable_run_conditions(cutoff)))
            connection.execute(
                delete(SpentRefreshToken).where(SpentRefreshToken.spent_at < spent_cutoff)
            )
            return int(attempts.rowcount), int(runs.rowcount)

        return self.transaction(write)

    def start_run(self, command: str, host: str, pid: int, shard: str | None) -> int:
        def write(connection: Connection) -> int:
            return int(
                connection.execute(
                    insert(Run)
                    .values(
                        command=command,
                        host=host,
                        pid=pid,
                        shard=shard,
                        started_at=self.clock(),
                        counts="{}",
                    )
                    .returning(Run.id)
                ).scalar_one()
            )

        return self.transaction(write)

    def finish_run(
        self,
        run_id: int,
        *,
        outcome: str,
        exit_code: int,
        counts: dict[str, int],
        message: str | None,
    ) -> None:
        """Record how a run ended; a run that failed for a run-level reason (stopped,
        an error, its configuration: exit 1 or 3) records `run.failed` with it."""
        now = self.clock()

        def write(connection: Connection) -> None:
            connection.execute(
                update(Run)
                .where(Run.id == run_id)
                .values(
                    finished_at=now,
                    outcome=outcome,
                    exit_code=exit_code,
                    counts=json.dumps(counts, sort_keys=True),
                    message=stored_text(message),
                )
            )
            if outcome in RUN_LEVEL_FAILURES and exit_code in (EXIT_FAILURES, EXIT_CONFIG):
                run = connection.execute(
                    select(Run.command, Run.shard).where(Run.id == run_id)
                ).one()
                data = {
                    "run_id": run_id,
                    "command": run.command,
                    "shard": run.shard,
                    "exit_code": exit_code,
                    "outcome": outcome,
                    "message": stored_text(message, 500),
                }
                record_event(connection, EventType.RUN_FAILED, data, now)

        self.transaction(write)

    def last_runs(self) -> dict[str, RunView]:
        """The newest run of each command, finished or not."""
        newest = select(Run.command, func.max(Run.id).label("id")).group_by(Run.command).subquery()
        query = select(*RUN_COLUMNS).join(newest, Run.id == newest.c.id)
        return {row.command: run_view(row) for row in self.rows(query)}

    def last_successful_runs(self) -> dict[str, RunView]:
        """The newest successful run of each command: see `counts_as_success`."""
        newest = (
            select(Run.command, func.max(Run.id).label("id"))
            .where(Run.outcome == "ok")
            .group_by(Run.command)
            .subquery()
        )
        query = select(*RUN_COLUMNS).join(newest, Run.id == newest.c.id)
        found = {row.command: run_view(row) for row in self.rows(query)}
        ok = found.get("refresh")
        newer = self._newest_refresh_with_only_reconnects(ok.id if ok is not None else 0)
        if newer is not None:
            found["refresh"] = newer
        return found

    def _newest_refresh_with_only_reconnects(self, after_id: int) -> RunView | None:
        """The newest refresh run after `after_id` that ended "failures" with no problem
        but users to reconnect; read a page at a time, newest first."""
        below: int | None = None
        while True:
            query = (
                select(Run.id, Run.counts)
                .where(Run.command == "refresh", Run.outcome == "failures", Run.id > after_id)
                .order_by(Run.id.desc())
                .limit(_PAGE)
            )
            if below is not None:
                query = query.where(Run.id < below)
            page = self.rows(query)
            for row in page:
                if counts_as_success("refresh", "failures", json.loads(row.counts or "{}")):
                    found = self.row(select(*RUN_COLUMNS).where(Run.id == row.id))
                    return run_view(found) if found is not None else None
            if len(page) < _PAGE:
                return None
            below = page[-1].id


_PAGE = 500

# The results of a refresh run that a successful run may have: refreshed and skipped
# accounts, and expired ones (TikTok rejected the user's refresh token: the user must
# reconnect, which no later run can change, and `status --check` reports as a warning).
_SUCCESS_DESPITE = frozenset({"refreshed", "skipped", "expired"})


def counts_as_success(command: str, outcome: str | None, counts: dict[str, int]) -> bool:
    """The rule for "the last successful run" (`status`, `status --check`, the metrics'
    last_success_timestamp): a run that ended "ok"; or a refresh run that ended "failures"
    (it ran to its end: no stop, no error, no signal) whose only problem accounts are
    expired. A failed account (no verdict: TikTok or the network failed, tried again
    later), a lost one (a new pair that could not be stored), or any stop (circuit breaker,
    rate limit, max runtime with due accounts left, a database error, the app's credentials
    rejected, a signal) keeps a run from counting."""
    if outcome == "ok":
        return True
    return (
        command == "refresh"
        and outcome == "failures"
        and all(count == 0 for result, count in counts.items() if result not in _SUCCESS_DESPITE)
    )
