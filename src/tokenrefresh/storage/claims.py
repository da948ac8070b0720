"""Claiming one account for a refresh, and the writes that end the claim.

A claim is a lease, not a held transaction: one short transaction sets `lease_owner` and
`lease_expires_at` on the row (PostgreSQL picks the row with `FOR UPDATE SKIP LOCKED`, so
no claimer ever waits on another), and commits. The call to TikTok then holds no database
connection, so a run needs a handful of connections however many calls are in flight.
Whoever holds the lease is the only one to present the account's refresh token; the write
that ends the claim clears it. A lease that runs out (its holder died) frees the account;
a lease whose holder was in this pid namespace on this boot, and is gone, is taken over at
once (`leases.py`).

Every write that ends a claim is a compare-and-set on the token generation the claim read,
so a writer that read an older pair never overwrites a newer one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Executable,
    func,
    literal,
    select,
    tuple_,
)

from tokenrefresh.base.defaults import FAILING_AFTER
from tokenrefresh.errors import DatabaseError
from tokenrefresh.storage.claim_statements import (
    INSERT_ATTEMPT,
    MARK_EXPIRED,
    RECORD_FAILURE,
    RELEASE,
    SAVE_GRANT,
    claim_statement,
    due_parameters,
    grant_parameters,
    spent_insert,
    takeover_statement,
)
from tokenrefresh.storage.database import Database
from tokenrefresh.storage.leases import holder_is_gone, lease_owner
from tokenrefresh.storage.models import Account, BigId, UTCDateTime
from tokenrefresh.storage.outbox import record_expired, record_failing, record_recovered
from tokenrefresh.storage.records import (
    AccountStatus,
    AttemptRecord,
    Candidate,
    ClaimedAccount,
    Due,
    NewTokens,
    WriteResult,
)
from tokenrefresh.storage.sql import (
    CANDIDATE_COLUMNS,
    claimed_account,
    due_where,
    stored_text,
)

__all__ = ["DEFAULT_LEASE", "Claim", "ClaimQueries", "GrantNotStored"]

log = logging.getLogger(__name__)

# How long a claim may take at most before another may take the account: room for every
# attempt of a refresh (3 calls of --http-timeout, the waits between them) and then some.
DEFAULT_LEASE = timedelta(minutes=5)
GRANT_WRITE_ATTEMPTS = 4
GRANT_WRITE_BACKOFF = 0.5  # seconds, doubled after each failed attempt


class GrantNotStored(DatabaseError):
    """A new token pair was received from TikTok but could not be stored."""

    reason = "not_stored"

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"TikTok issued a new token pair but the database did not take it ({detail}); "
            "its user may have to reconnect"
        )
        self.detail = detail  # the database's last error, safe to show


class ClaimQueries(Database):
    """Finding due accounts and claiming them one at a time."""

    def due_batches(self, due: Due, batch_size: int) -> Iterator[list[Candidate]]:
        """Due accounts, most urgent first, a batch at a time (keyset pagination)."""
        conditions = due_where(due)
        after: tuple[datetime, int] | None = None
        while True:
            query = (
                select(*CANDIDATE_COLUMNS)
                .where(*conditions)
                .order_by(Account.access_expires_at, Account.id)
                .limit(batch_size)
            )
            if after is not None:
                query = query.where(
                    tuple_(Account.access_expires_at, Account.id)
                    > tuple_(literal(after[0], UTCDateTime()), literal(after[1], BigId))
                )
            rows = self.rows(query)
            if not rows:
                return
            yield [Candidate(*tuple(row)) for row in rows]
            if len(rows) < batch_size:
                return
            after = (rows[-1].access_expires_at, rows[-1].id)

    def candidates(self, account_ids: Sequence[int]) -> list[Candidate]:
        """The accounts asked for by id, in the order given."""
        query = select(*CANDIDATE_COLUMNS).where(Account.id.in_(list(account_ids)))
        rows = {row.id: Candidate(*tuple(row)) for row in self.rows(query)}
        return [rows[account_id] for account_id in account_ids if account_id in rows]

    def count_due(self, due: Due) -> int:
        conditions = due_where(due)
        return int(self.scalar(select(func.count()).select_from(Account).where(*conditions)))

    @contextmanager
    def claim(
        self,
        account_id: int,
        due: Due | None,
        run_id: int | None = None,
        *,
        lease: timedelta = DEFAULT_LEASE,
        owner: str | None = None,
    ) -> Iterator[Claim | None]:
        """Lease one account for refreshing; None if someone else holds it or it is no
        longer due.

        With `due`, the account must still match it (checked in the claiming statement, so
        an account another run refreshed a moment ago is not refreshed again); without, any
        status. The lease lasts `lease` at most; the claim's own write, or leaving this
        block, ends it sooner.
        """
        holder = owner or lease_owner()
        row = self._take_lease(account_id, due, holder, lease)
        if row is None:
            yield None
            return
        claim = Claim(self, claimed_account(row), run_id, holder)
        try:
            yield claim
        finally:
            claim.release()

    def lease_holder(self, account_id: int) -> tuple[str | None, datetime | None]:
        """Who holds the account's lease, and until when (None, None: nobody)."""
        row = self.row(
            select(Account.lease_owner, Account.lease_expires_at).where(Account.id == account_id)
        )
        if row is None or row.lease_owner is None:
            return None, None
        return row.lease_owner, row.lease_expires_at

    def _take_lease(self, account_id: int, due: Due | None, holder: str, lease: timedelta) -> Any:
        """The claiming statement: the row's claim columns if the lease was taken, else None.

        A lease whose holder is certainly gone (`leases.holder_is_gone`) is taken over."""
        now = self.clock()
        parameters: dict[str, Any] = {
            "b_id": account_id,
            "b_now": now,
            "b_owner": holder,
            "b_until": now + lease,
            **(due_parameters(due) if due is not None else {}),
        }
        statement = claim_statement(due, self.holds_row_locks)
        row = self.single_write(lambda c: c.execute(statement, parameters).one_or_none())
        if row is not None:
            return row
        stale, _ = self.lease_holder(account_id)
        if stale is None or not holder_is_gone(stale):
            return None
        log.info("account %s: taking over the lease of %s, which is gone", account_id, stale)
        parameters["b_stale"] = stale
        takeover = takeover_statement(due, self.holds_row_locks)
        return self.single_write(lambda c: c.execute(takeover, parameters).one_or_none())


class Claim:
    """One leased account and the writes that end the lease (each commits at once)."""

    def __init__(
        self, database: Database, account: ClaimedAccount, run_id: int | None, owner: str
    ) -> None:
        self.account = account
        self.owner = owner
        self._database = database
        self._run_id = run_id
        self.closed = False

    def save_grant(
        self,
        tokens: NewTokens,
        attempts: Sequence[AttemptRecord],
        *,
        status: AccountStatus = AccountStatus.ACTIVE,
        error: str | None = None,
    ) -> WriteResult:
        """Store the new pair and commit, retrying on a fresh connection if this one broke.

        The new refresh token is the only valid one: losing it disconnects the user. The
        write is a compare-and-set against the row the claim read: if the account was
        re-imported meanwhile (a newer consent), that pair wins and LOST_RACE comes back.
        """
        account, now = self.account, self._database.clock()
        parameters = grant_parameters(account, tokens, status, error, now)
        self.closed = True
        rotated = tokens.refresh_token_ciphertext is not None

        recovered = status == AccountStatus.ACTIVE and (
            account.status != AccountStatus.ACTIVE or account.consecutive_failures >= FAILING_AFTER
        )

        def work(connection: Connection) -> WriteResult:
            if rotated:
                # The imported refresh token (if it still is the stored one) is spent now.
                connection.execute(
                    spent_insert(connection.dialect.name),
                    {"b_id": account.id, "b_generation": account.token_generation, "b_now": now},
                )
            result = self._written(connection, SAVE_GRANT, parameters, attempts)
            if result == WriteResult.WRITTEN and recovered:
                record_recovered(connection, account.id, now, "a refresh that worked")
            return result

        try:
            return self._write_grant(work)
        except BaseException:
            # The pair is lost: whoever waits for this account must not wait for a holder
            # that is done with it (if even this write fails, the lease runs out).
            self._end_lease()
            raise

    def _write_grant(self, work: Callable[[Connection], WriteResult]) -> WriteResult:
        """`work` committed, tried GRANT_WRITE_ATTEMPTS times on fresh connections;
        GrantNotStored if the database never took it."""
        account_id, last_error = self.account.id, ""
        delay = GRANT_WRITE_BACKOFF
        for attempt in range(1, GRANT_WRITE_ATTEMPTS + 1):
            if attempt > 1:
                time.sleep(delay)
                delay *= 2
            try:
                return self._database.transaction(work)
            except DatabaseError as error:
                last_error = error.message
                log.warning(
                    "account %s: storing the new token failed (attempt %d of %d): %s",
                    account_id,
                    attempt,
                    GRANT_WRITE_ATTEMPTS,
                    last_error,
                )
        raise GrantNotStored(last_error)

    def mark_expired(self, reason: str, attempts: Sequence[AttemptRecord]) -> WriteResult:
        """Mark the account expired, unless a newer token pair was stored meanwhile; an
        `account.expired` event goes with it."""
        account_id = self.account.id

        def event(connection: Connection, now: datetime) -> None:
            record_expired(connection, account_id, now, reason)

        return self._conditional(
            MARK_EXPIRED, {"b_error": stored_text(reason)}, attempts, after=event
        )

    def record_failure(
        self, reason: str, next_attempt_at: datetime, attempts: Sequence[AttemptRecord]
    ) -> WriteResult:
        """Count a failed refresh and push the next attempt back; the account stays active.
        The failure that makes FAILING_AFTER in a row records `account.failing`."""
        parameters = {"b_error": stored_text(reason), "b_next_attempt": next_attempt_at}
        account_id, failures = self.account.id, self.account.consecutive_failures + 1

        def event(connection: Connection, now: datetime) -> None:
            if failures == FAILING_AFTER:
                record_failing(connection, account_id, now, reason, failures)

        return self._conditional(RECORD_FAILURE, parameters, attempts, after=event)

    def release(self) -> None:
        """End the lease without writing anything (a no-op once the claim has ended)."""
        if self.closed:
            return
        self.closed = True
        self._end_lease()

    def _end_lease(self) -> None:
        """Clear the lease if it is still ours; if the database refuses, it runs out."""
        try:
            self._database.single_write(
                lambda c: c.execute(RELEASE, {"b_id": self.account.id, "b_owner": self.owner})
            )
        except DatabaseError as error:
            # The lease runs out by itself; nothing else depends on this write.
            log.warning("account %s: could not end the lease: %s", self.account.id, error)

    def _conditional(
        self,
        statement: Executable,
        parameters: dict[str, Any],
        attempts: Sequence[AttemptRecord],
        *,
        after: Callable[[Connection, datetime], None] | None = None,
    ) -> WriteResult:
        """A write that ends the claim if nobody stored a newer pair and the lease is ours."""
        if self.closed:
            raise RuntimeError("this claim has ended already")
        self.closed = True
        account = self.account
        now = self._database.clock()
        full = {
            **parameters,
            "b_id": account.id,
            "b_generation": account.token_generation,
            "b_owner": self.owner,
            "b_now": now,
        }

        def work(connection: Connection) -> WriteResult:
            result = self._written(connection, statement, full, attempts)
            if result == WriteResult.WRITTEN and after is not None:
                after(connection, now)  # the event, in the same transaction as the change
            return result

        return self._database.transaction(work)

    def _written(
        self,
        connection: Connection,
        statement: Executable,
        parameters: dict[str, Any],
        attempts: Sequence[AttemptRecord],
    ) -> WriteResult:
        """The compare-and-set write, and the attempt history in the same transaction."""
        if connection.execute(statement, parameters).rowcount:
            result = WriteResult.WRITTEN
        else:
            result = _race_or_gone(connection, self.account.id)
            # The write did not end the lease; end it here (if it is still ours).
            connection.execute(RELEASE, {"b_id": self.account.id, "b_owner": self.owner})
        if result != WriteResult.GONE:
            _insert_attempts(connection, self.account.id, self._run_id, attempts)
        return result


def _race_or_gone(connection: Connection, account_id: int) -> WriteResult:
    """Why a compare-and-set wrote nothing: a newer pair was stored, or the row is gone."""
    exists = connection.execute(
        select(Account.id).where(Account.id == account_id)
    ).scalar_one_or_none()
    return WriteResult.LOST_RACE if exists is not None else WriteResult.GONE


def _insert_attempts(
    connection: Connection,
    account_id: int,
    run_id: int | None,
    attempts: Sequence[AttemptRecord],
) -> None:
    if attempts:
        connection.execute(
            INSERT_ATTEMPT,
            [
                {
                    "account_id": account_id,
                    "run_id": run_id,
                    "attempted_at": attempt.attempted_at,
                    "outcome": attempt.outcome,
                    "http_status": attempt.http_status,
                    "error_code": stored_text(attempt.error_code, 64),
                    "log_id": stored_text(attempt.log_id, 128),
                    "duration_ms": attempt.duration_ms,
                    "message": stored_text(attempt.message),
                }
                for attempt in attempts
            ],
        )
