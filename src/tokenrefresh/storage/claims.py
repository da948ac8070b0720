"""Claiming one account for a refresh, and the writes that end the claim.

On PostgreSQL an account is claimed with `SELECT ... FOR UPDATE SKIP LOCKED` in a
transaction that stays open while its refresh is in flight, so no other run can read its
refresh token until the answer is stored; if the run dies, PostgreSQL rolls the
transaction back and the account is free again. SQLite has no row locks (it ignores FOR
UPDATE): there the run lock keeps runs apart, the claim is a plain read, and each write is
its own short `BEGIN IMMEDIATE` transaction. On both, every write that ends a claim is a
compare-and-set on the token generation the claim read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Executable,
    Select,
    Text,
    and_,
    bindparam,
    case,
    func,
    insert,
    literal,
    select,
    tuple_,
    update,
)

from tokenrefresh.errors import DatabaseError
from tokenrefresh.storage.database import Database, close_quietly, translated
from tokenrefresh.storage.models import Account, Attempt, BigId, SpentRefreshToken, UTCDateTime
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
    CLAIM_COLUMNS,
    claimed_account,
    due_conditions,
    shard_condition,
    shard_conditions,
    stored_text,
)

__all__ = ["Claim", "ClaimQueries", "GrantNotStored"]

log = logging.getLogger(__name__)

GRANT_WRITE_ATTEMPTS = 4
GRANT_WRITE_BACKOFF = 0.5  # seconds, doubled after each failed attempt


class GrantNotStored(DatabaseError):
    """A new token pair was received from TikTok but could not be stored."""


class ClaimQueries(Database):
    """Finding due accounts and claiming them one at a time."""

    def due_batches(self, due: Due, batch_size: int) -> Iterator[list[Candidate]]:
        """Due accounts, most urgent first, a batch at a time (keyset pagination)."""
        conditions = [*due_conditions(due.now, due.horizon), *shard_conditions(due.shard)]
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
        conditions = [*due_conditions(due.now, due.horizon), *shard_conditions(due.shard)]
        return int(self.scalar(select(func.count()).select_from(Account).where(*conditions)))

    @contextmanager
    def claim(
        self, account_id: int, due: Due | None, run_id: int | None = None
    ) -> Iterator[Claim | None]:
        """Claim one account for refreshing; None if another run has it or it is no longer due.

        With `due`, the account must still match it (checked after locking, so an account
        another run refreshed a moment ago is not refreshed again); without, any status.
        """
        query = _claim_statement(
            due is not None, due is not None and due.shard is not None, self.holds_row_locks
        )
        parameters = {"b_id": account_id, **(_due_parameters(due) if due is not None else {})}
        if not self.holds_row_locks:
            found = self.read(lambda c: c.execute(query, parameters).one_or_none())
            yield Claim(self, claimed_account(found), run_id) if found is not None else None
            return
        with translated():
            connection = self.engine.connect()
            try:
                transaction = connection.begin()
                row = connection.execute(query, parameters).one_or_none()
            except BaseException:
                connection.close()
                raise
        if row is None:
            close_quietly(connection)
            yield None
            return
        claim = Claim(self, claimed_account(row), run_id, held=(connection, transaction))
        try:
            yield claim
        finally:
            claim.release()


class Claim:
    """One claimed account and the writes that end the claim (each commits at once)."""

    def __init__(
        self,
        database: Database,
        account: ClaimedAccount,
        run_id: int | None,
        held: tuple[Connection, Any] | None = None,
    ) -> None:
        self.account = account
        self._database = database
        self._run_id = run_id
        self._held = held  # PostgreSQL: the open transaction that holds the row lock
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
        parameters = _grant_parameters(account, tokens, status, error, now)
        rotated = tokens.refresh_token_ciphertext is not None

        def work(connection: Connection) -> WriteResult:
            if rotated:
                # The imported refresh token (if it still is the stored one) is spent now.
                connection.execute(
                    _spent_insert(connection.dialect.name),
                    {"b_id": account.id, "b_generation": account.token_generation, "b_now": now},
                )
            return self._written(connection, _SAVE_GRANT, parameters, attempts)

        try:
            return self._commit(work)
        except DatabaseError as error_:
            last_error = error_.message
            log.warning(
                "account %s: storing the new token failed (%s); retrying on a new connection",
                account.id,
                last_error,
            )
        delay = GRANT_WRITE_BACKOFF
        for attempt in range(2, GRANT_WRITE_ATTEMPTS + 1):
            time.sleep(delay)
            delay *= 2
            try:
                return self._database.transaction(work)
            except DatabaseError as error_:
                last_error = error_.message
                log.warning(
                    "account %s: storing the new token failed again (attempt %d of %d): %s",
                    account.id,
                    attempt,
                    GRANT_WRITE_ATTEMPTS,
                    last_error,
                )
        raise GrantNotStored(
            f"TikTok issued a new token pair but the database did not take it ({last_error}); "
            "its user may have to reconnect"
        )

    def mark_expired(self, reason: str, attempts: Sequence[AttemptRecord]) -> WriteResult:
        """Mark the account expired, unless a newer token pair was stored meanwhile."""
        return self._conditional(_MARK_EXPIRED, {"b_error": stored_text(reason)}, attempts)

    def record_failure(
        self, reason: str, next_attempt_at: datetime, attempts: Sequence[AttemptRecord]
    ) -> WriteResult:
        """Count a failed refresh and push the next attempt back; the account stays active."""
        parameters = {"b_error": stored_text(reason), "b_next_attempt": next_attempt_at}
        return self._conditional(_RECORD_FAILURE, parameters, attempts)

    def release(self) -> None:
        """End the claim without writing anything (a no-op once it has ended)."""
        if self.closed:
            return
        held = self._end()
        if held is not None:
            close_quietly(held[0])

    def _conditional(
        self,
        statement: Executable,
        parameters: dict[str, Any],
        attempts: Sequence[AttemptRecord],
    ) -> WriteResult:
        account = self.account
        full = {
            **parameters,
            "b_id": account.id,
            "b_generation": account.token_generation,
            "b_now": self._database.clock(),
        }
        return self._commit(lambda c: self._written(c, statement, full, attempts))

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
        if result != WriteResult.GONE:
            _insert_attempts(connection, self.account.id, self._run_id, attempts)
        return result

    def _end(self) -> tuple[Connection, Any] | None:
        if self.closed:
            raise RuntimeError("this claim has ended already")
        self.closed = True
        held, self._held = self._held, None
        return held

    def _commit(self, work: Callable[[Connection], WriteResult]) -> WriteResult:
        """Run the write in the held transaction (PostgreSQL) or a new one (SQLite)."""
        held = self._end()
        if held is None:
            return self._database.transaction(work)
        connection, transaction = held
        try:
            with translated():
                result: WriteResult = work(connection)
                transaction.commit()
                return result
        finally:
            close_quietly(connection)


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
            _INSERT_ATTEMPT,
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


def _grant_parameters(
    account: ClaimedAccount,
    tokens: NewTokens,
    status: AccountStatus,
    error: str | None,
    now: datetime,
) -> dict[str, Any]:
    return {
        "b_id": account.id,
        "b_generation": account.token_generation,
        # None keeps the stored value (COALESCE): never a token overwritten with nothing.
        "b_access": tokens.access_token_ciphertext,
        "b_access_expires": tokens.access_expires_at,
        "b_refresh": tokens.refresh_token_ciphertext,
        "b_refresh_expires": tokens.refresh_expires_at,
        "b_scope": tokens.scope,
        "b_status": status.value,
        "b_error": stored_text(error),
        "b_now": now,
    }


# The statements run once per refreshed account, built once: SQLAlchemy then reuses their
# compiled form instead of rebuilding and re-keying a statement for every account.
_NOW = bindparam("b_now", type_=UTCDateTime())
_SAME_GENERATION = and_(
    Account.id == bindparam("b_id"), Account.token_generation == bindparam("b_generation")
)
_REFRESH_PARAM = bindparam("b_refresh", type_=Text())
_SAVE_GRANT = (
    update(Account)
    .where(_SAME_GENERATION)
    .values(
        access_token_ciphertext=func.coalesce(
            bindparam("b_access", type_=Text()), Account.access_token_ciphertext
        ),
        access_expires_at=bindparam("b_access_expires", type_=UTCDateTime()),
        refresh_token_ciphertext=func.coalesce(_REFRESH_PARAM, Account.refresh_token_ciphertext),
        refresh_expires_at=func.coalesce(
            bindparam("b_refresh_expires", type_=UTCDateTime()), Account.refresh_expires_at
        ),
        # A token from TikTok was never in an import file: nothing to recognise it by.
        refresh_token_fingerprint=case(
            (_REFRESH_PARAM.is_(None), Account.refresh_token_fingerprint), else_=None
        ),
        tokens_issued_at=_NOW,
        scope=func.coalesce(bindparam("b_scope", type_=Text()), Account.scope),
        status=bindparam("b_status"),
        token_generation=Account.token_generation + 1,
        last_refreshed_at=_NOW,
        last_error=bindparam("b_error"),
        consecutive_failures=0,
        next_attempt_at=_NOW,
        updated_at=_NOW,
    )
)
_MARK_EXPIRED = (
    update(Account)
    .where(_SAME_GENERATION)
    .values(status=AccountStatus.EXPIRED.value, last_error=bindparam("b_error"), updated_at=_NOW)
)
_RECORD_FAILURE = (
    update(Account)
    .where(_SAME_GENERATION)
    .values(
        last_error=bindparam("b_error"),
        consecutive_failures=Account.consecutive_failures + 1,
        next_attempt_at=bindparam("b_next_attempt", type_=UTCDateTime()),
        updated_at=_NOW,
    )
)
_INSERT_ATTEMPT = insert(Attempt)
_SPENT_INSERTS: dict[str, Executable] = {}
_CLAIMS: dict[tuple[bool, bool, bool], Select[Any]] = {}


def _spent_insert(dialect: str) -> Executable:
    """INSERT the account's imported fingerprint into spent_refresh_tokens, if it has one;
    a fingerprint already there is left alone."""
    if dialect not in _SPENT_INSERTS:
        source = select(Account.refresh_token_fingerprint, Account.id, _NOW).where(
            _SAME_GENERATION, Account.refresh_token_fingerprint.is_not(None)
        )
        columns = ["fingerprint", "account_id", "spent_at"]
        statement: Executable
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as postgresql_insert

            statement = (
                postgresql_insert(SpentRefreshToken)
                .from_select(columns, source)
                .on_conflict_do_nothing(index_elements=["fingerprint"])
            )
        else:
            statement = (
                insert(SpentRefreshToken).from_select(columns, source).prefix_with("OR IGNORE")
            )
        _SPENT_INSERTS[dialect] = statement
    return _SPENT_INSERTS[dialect]


def _claim_statement(due: bool, sharded: bool, lock_row: bool) -> Select[Any]:
    """SELECT of one account by id; with `due`, only if it still matches the due rule;
    with `lock_row`, FOR UPDATE SKIP LOCKED."""
    key = (due, sharded, lock_row)
    if key not in _CLAIMS:
        query = select(*CLAIM_COLUMNS).where(Account.id == bindparam("b_id"))
        if due:
            now = bindparam("b_due_now", type_=UTCDateTime())
            query = query.where(*due_conditions(now, bindparam("b_horizon", type_=UTCDateTime())))
        if sharded:
            query = query.where(
                shard_condition(bindparam("b_shard_count"), bindparam("b_shard_index"))
            )
        if lock_row:
            query = query.with_for_update(skip_locked=True)
        _CLAIMS[key] = query
    return _CLAIMS[key]


def _due_parameters(due: Due) -> dict[str, Any]:
    parameters: dict[str, Any] = {"b_horizon": due.horizon, "b_due_now": due.now}
    if due.shard is not None:
        parameters.update(b_shard_count=due.shard.count, b_shard_index=due.shard.index)
    return parameters
