"""The repository: every query tokenrefresh runs lives here, in methods named for what they do.

Services get plain frozen dataclasses back, never ORM objects or rows, and never plaintext
tokens: this layer stores and returns ciphertexts only.

Claims are the heart of it. On PostgreSQL an account is claimed with
`SELECT ... FOR UPDATE SKIP LOCKED` in a transaction that stays open while its refresh is
in flight, so no other run can read its refresh token until the answer is stored; if the
run dies, PostgreSQL rolls the transaction back and the account is free again. SQLite has
no row locks (it ignores FOR UPDATE): there the run lock keeps runs apart, the claim is a
plain read, and each write is its own short `BEGIN IMMEDIATE` transaction.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Executable,
    Row,
    Select,
    Text,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError

from tokenrefresh.clock import Clock, utcnow
from tokenrefresh.errors import DatabaseError
from tokenrefresh.storage.engine import describe_db_error
from tokenrefresh.storage.models import Account, AccountStatus, Attempt, BigId, Run, UTCDateTime
from tokenrefresh.storage.records import (
    AccountView,
    AttemptRecord,
    AttemptView,
    Candidate,
    ClaimedAccount,
    Due,
    NewAccount,
    NewTokens,
    RunView,
    Stats,
    TokenCiphertexts,
    WriteResult,
)

__all__ = ["Claim", "GrantNotStored", "Repository"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# A literal, not a bound parameter: PostgreSQL can then match the partial index
# `ix_accounts_due ... WHERE status = 'active'` even in a generic (prepared) plan.
IS_ACTIVE = Account.status == literal_column("'active'")
IS_FAILING = Account.consecutive_failures > literal_column("0")

GRANT_WRITE_ATTEMPTS = 4
GRANT_WRITE_BACKOFF = 0.5  # seconds, doubled after each failed attempt


class GrantNotStored(DatabaseError):
    """A new token pair was received from TikTok but could not be stored."""


# ----------------------------------------------------------------------------- claims


class Claim:
    """One claimed account and the writes that end the claim (each commits at once)."""

    def __init__(
        self,
        repository: Repository,
        account: ClaimedAccount,
        run_id: int | None,
        held: tuple[Connection, Any] | None,
    ) -> None:
        self.account = account
        self._repository = repository
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
    ) -> str:
        """Store the new pair and commit, retrying on a fresh connection if this one broke.

        The new refresh token is the only valid one: losing it disconnects the user.
        """
        repository = self._repository
        work = self._with_attempts(
            lambda connection: repository._save_grant(
                connection, self.account.id, tokens, status, error
            ),
            attempts,
        )
        try:
            return self._commit(self._end(), work)
        except DatabaseError as error_:
            log.warning(
                "account %s: storing the new token failed (%s); retrying on a new connection",
                self.account.id,
                error_,
            )
        delay = GRANT_WRITE_BACKOFF
        for attempt in range(2, GRANT_WRITE_ATTEMPTS + 1):
            time.sleep(delay)
            delay *= 2
            try:
                return repository._transaction(work)
            except DatabaseError as error_:
                log.warning(
                    "account %s: storing the new token failed again (attempt %d of %d): %s",
                    self.account.id,
                    attempt,
                    GRANT_WRITE_ATTEMPTS,
                    error_,
                )
        raise GrantNotStored(
            f"account {self.account.id} ({self.account.open_id}): TikTok issued a new token "
            "pair but the database did not take it; the account's user may have to reconnect"
        )

    def mark_expired(self, reason: str, attempts: Sequence[AttemptRecord]) -> str:
        """Mark the account expired, unless a newer token pair was stored meanwhile."""
        return self._conditional(_MARK_EXPIRED, {"b_error": reason}, attempts)

    def record_failure(
        self, reason: str, next_attempt_at: datetime, attempts: Sequence[AttemptRecord]
    ) -> str:
        """Count a failed refresh and push the next attempt back; the account stays active."""
        return self._conditional(
            _RECORD_FAILURE, {"b_error": reason, "b_next_attempt": next_attempt_at}, attempts
        )

    def release(self) -> None:
        """End the claim without writing anything (a no-op once it has ended)."""
        if self.closed:
            return
        held = self._end()
        if held is not None:
            _close_quietly(held[0])

    def _conditional(
        self, statement: Executable, parameters: dict[str, Any], attempts: Sequence[AttemptRecord]
    ) -> str:
        repository = self._repository
        work = self._with_attempts(
            lambda connection: repository._conditional_update(
                connection, self.account, statement, parameters
            ),
            attempts,
        )
        return self._commit(self._end(), work)

    def _with_attempts(
        self, write: Callable[[Connection], str], attempts: Sequence[AttemptRecord]
    ) -> Callable[[Connection], str]:
        """The write, plus the attempt history in the same transaction."""
        repository = self._repository

        def work(connection: Connection) -> str:
            result = write(connection)
            if result != WriteResult.GONE:
                repository._insert_attempts(connection, self.account.id, self._run_id, attempts)
            return result

        return work

    def _end(self) -> tuple[Connection, Any] | None:
        if self.closed:
            raise RuntimeError("this claim has ended already")
        self.closed = True
        held, self._held = self._held, None
        return held

    def _commit(
        self, held: tuple[Connection, Any] | None, work: Callable[[Connection], str]
    ) -> str:
        """Run the write in the held transaction (PostgreSQL) or a new one (SQLite)."""
        if held is None:
            return self._repository._transaction(work)
        connection, transaction = held
        try:
            with _translated():
                result = work(connection)
                transaction.commit()
                return result
        finally:
            _close_quietly(connection)


# ----------------------------------------------------------------------------- repository


class Repository:
    """All database access of tokenrefresh."""

    def __init__(self, engine: Engine, clock: Clock = utcnow) -> None:
        self.engine = engine
        self._clock = clock
        self.holds_row_locks = engine.dialect.name == "postgresql"

    # --- accounts ---------------------------------------------------------------

    def import_accounts(self, accounts: Sequence[NewAccount]) -> tuple[int, int]:
        """Upsert by open_id in one transaction; (created, updated).

        A re-import is a new consent: the account becomes active again with fresh tokens,
        unless it was disabled by hand, which stays the operator's decision.
        """
        now = self._clock()

        def write(connection: Connection) -> tuple[int, int]:
            existing: set[str] = set()
            open_ids = [account.open_id for account in accounts]
            for chunk in _chunks(open_ids, 500):
                existing.update(
                    connection.execute(
                        select(Account.open_id).where(Account.open_id.in_(chunk))
                    ).scalars()
                )
            new_rows = [
                _new_account_values(account, now)
                for account in accounts
                if account.open_id not in existing
            ]
            if new_rows:
                connection.execute(insert(Account), new_rows)
            for account in accounts:
                if account.open_id in existing:
                    connection.execute(
                        update(Account)
                        .where(Account.open_id == account.open_id)
                        .values(_reimport_values(account, now))
                    )
            return len(new_rows), len(existing)

        try:
            return self._transaction(write)
        except DatabaseError as error:
            if isinstance(error.__cause__, IntegrityError):
                raise DatabaseError(
                    "the import clashed with a concurrent change of the same open_id; "
                    "nothing was imported, run it again"
                ) from None
            raise

    def list_accounts(
        self, status: str | None = None, limit: int | None = None
    ) -> list[AccountView]:
        query = select(*_VIEW_COLUMNS).order_by(Account.id).limit(limit)
        if status is not None:
            query = query.where(Account.status == status)
        return [_account_view(row) for row in self._rows(query)]

    def get_account(self, account_id: int) -> AccountView | None:
        query = select(*_VIEW_COLUMNS).where(Account.id == account_id)
        row = self._row(query)
        return _account_view(row) if row is not None else None

    def find_account(self, open_id: str) -> AccountView | None:
        query = select(*_VIEW_COLUMNS).where(Account.open_id == open_id)
        row = self._row(query)
        return _account_view(row) if row is not None else None

    def access_token_ciphertext(self, account_id: int) -> str | None:
        query = select(Account.access_token_ciphertext).where(Account.id == account_id)
        value: str | None = self._scalar(query)
        return value

    def existing_ids(self, account_ids: Iterable[int]) -> set[int]:
        ids = sorted(set(account_ids))
        found: set[int] = set()
        for chunk in _chunks(ids, 500):
            query = select(Account.id).where(Account.id.in_(chunk))
            found.update(row.id for row in self._rows(query))
        return found

    def remove_account(self, account_id: int) -> bool:
        def write(connection: Connection) -> bool:
            result = connection.execute(delete(Account).where(Account.id == account_id))
            return bool(result.rowcount)

        return self._transaction(write)

    def set_status(self, account_id: int, status: AccountStatus) -> bool:
        """Enable (active) or disable an account by hand; clears the failure back-off."""
        now = self._clock()
        values: dict[str, Any] = {"status": status.value, "updated_at": now}
        if status is AccountStatus.ACTIVE:
            values.update(consecutive_failures=0, next_attempt_at=now, last_error=None)

        def write(connection: Connection) -> bool:
            result = connection.execute(
                update(Account).where(Account.id == account_id).values(values)
            )
            return bool(result.rowcount)

        return self._transaction(write)

    def recent_attempts(self, account_id: int, limit: int) -> list[AttemptView]:
        query = (
            select(*_ATTEMPT_COLUMNS)
            .where(Attempt.account_id == account_id)
            .order_by(Attempt.attempted_at.desc(), Attempt.id.desc())
            .limit(limit)
        )
        return [AttemptView(**row._mapping) for row in self._rows(query)]

    # --- refresh ----------------------------------------------------------------

    def due_batches(self, due: Due, batch_size: int) -> Iterator[list[Candidate]]:
        """Due accounts, most urgent first, a batch at a time (keyset pagination)."""
        after: tuple[datetime, int] | None = None
        while True:
            query = (
                select(*_CANDIDATE_COLUMNS)
                .where(*_due_conditions(due))
                .order_by(Account.access_expires_at, Account.id)
                .limit(batch_size)
            )
            if after is not None:
                query = query.where(
                    tuple_(Account.access_expires_at, Account.id)
                    > tuple_(literal(after[0], UTCDateTime()), literal(after[1], BigId))
                )
            rows = self._rows(query)
            if not rows:
                return
            yield [Candidate(*tuple(row)) for row in rows]
            if len(rows) < batch_size:
                return
            after = (rows[-1].access_expires_at, rows[-1].id)

    def candidates(self, account_ids: Sequence[int]) -> list[Candidate]:
        """The accounts asked for by id, in the order given."""
        query = select(*_CANDIDATE_COLUMNS).where(Account.id.in_(list(account_ids)))
        rows = {row.id: Candidate(*tuple(row)) for row in self._rows(query)}
        return [rows[account_id] for account_id in account_ids if account_id in rows]

    def sample_refresh_ciphertext(
        self, due: Due | None, account_ids: Sequence[int] = ()
    ) -> str | None:
        """One stored refresh token a run would use: to check the keys before it starts."""
        query = select(Account.refresh_token_ciphertext).where(
            Account.refresh_token_ciphertext.is_not(None)
        )
        if account_ids:
            query = query.where(Account.id.in_(list(account_ids)))
        elif due is not None:
            query = query.where(*_due_conditions(due)).order_by(
                Account.access_expires_at, Account.id
            )
        value: str | None = self._scalar(query.limit(1))
        return value

    def count_due(self, due: Due) -> int:
        query = select(func.count()).select_from(Account).where(*_due_conditions(due))
        return int(self._scalar(query))

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
            found = self._read(lambda c: c.execute(query, parameters).one_or_none())
            claim = Claim(self, _claimed(found), run_id, None) if found is not None else None
            yield claim
            return
        with _translated():
            connection = self.engine.connect()
            try:
                transaction = connection.begin()
                row = connection.execute(query, parameters).one_or_none()
            except BaseException:
                connection.close()
                raise
        if row is None:
            _close_quietly(connection)
            yield None
            return
        claim = Claim(self, _claimed(row), run_id, (connection, transaction))
        try:
            yield claim
        finally:
            claim.release()

    # --- status -----------------------------------------------------------------

    def stats(self, now: datetime, window: timedelta) -> Stats:
        horizon = now + window

        def read(connection: Connection) -> Stats:
            counted = connection.execute(
                select(Account.status, func.count()).group_by(Account.status)
            ).all()
            by_status: dict[str, int] = dict(counted)
            # Each figure from its own indexed query: one pass over every active account
            # would read a million rows where a few thousand index entries are enough.
            expiring, overdue = connection.execute(
                select(
                    func.count().filter(Account.access_expires_at > now),
                    # Overdue: could be refreshed and was not. An account whose refresh
                    # token ran out cannot be: it needs its user (counted below).
                    func.count().filter(
                        Account.access_expires_at <= now, Account.refresh_expires_at > now
                    ),
                ).where(IS_ACTIVE, Account.access_expires_at <= horizon)  # ix_accounts_due
            ).one()
            past_refresh_expiry = connection.execute(
                select(func.count()).where(*_past_refresh_expiry(now))
            ).scalar_one()
            failing = connection.execute(
                select(func.count()).where(IS_ACTIVE, IS_FAILING)  # ix_accounts_failing
            ).scalar_one()
            soonest_access = connection.execute(
                select(func.min(Account.access_expires_at)).where(IS_ACTIVE)
            ).scalar_one()
            soonest_refresh = connection.execute(
                select(func.min(Account.refresh_expires_at)).where(IS_ACTIVE)
            ).scalar_one()
            return Stats(
                by_status={
                    status.value: by_status.get(status.value, 0) for status in AccountStatus
                },
                expiring_within_window=expiring,
                overdue=overdue,
                failing=failing,
                past_refresh_expiry=past_refresh_expiry,
                soonest_access_expiry=soonest_access,
                soonest_refresh_expiry=soonest_refresh,
            )

        return self._read(read)

    # --- cleanup ----------------------------------------------------------------

    def reconnect_needed(self, now: datetime, limit: int) -> list[AccountView]:
        """Accounts whose user must reconnect: expired, or past their refresh token's expiry."""
        query = (
            select(*_VIEW_COLUMNS)
            .where(
                or_(
                    Account.status == AccountStatus.EXPIRED.value,
                    and_(*_past_refresh_expiry(now)),
                )
            )
            .order_by(Account.id)
            .limit(limit)
        )
        return [_account_view(row) for row in self._rows(query)]

    def past_refresh_expiry(self, now: datetime, limit: int) -> list[AccountView]:
        """Accounts not yet marked expired whose refresh token has run out."""
        query = (
            select(*_VIEW_COLUMNS)
            .where(*_past_refresh_expiry(now))
            .order_by(Account.id)
            .limit(limit)
        )
        return [_account_view(row) for row in self._rows(query)]

    def expire_past_refresh_expiry(self, now: datetime) -> int:
        def write(connection: Connection) -> int:
            result = connection.execute(
                update(Account)
                .where(*_past_refresh_expiry(now))
                .values(
                    status=AccountStatus.EXPIRED.value,
                    last_error="the refresh token passed its expiry; the user must reconnect",
                    updated_at=now,
                )
            )
            return int(result.rowcount)

        return self._transaction(write)

    def count_tokens_to_erase(self, now: datetime) -> int:
        """How many accounts cleanup would erase the tokens of (expired, or about to be)."""
        query = (
            select(func.count())
            .select_from(Account)
            .where(
                or_(
                    Account.status == AccountStatus.EXPIRED.value,
                    Account.refresh_expires_at <= now,
                ),
                _has_tokens(),
            )
        )
        return int(self._scalar(query))

    def erase_dead_tokens(self, now: datetime) -> int:
        """Erase the stored tokens of expired accounts: a dead secret is only a liability."""

        def write(connection: Connection) -> int:
            result = connection.execute(
                update(Account)
                .where(*_dead_token_conditions())
                .values(access_token_ciphertext=None, refresh_token_ciphertext=None, updated_at=now)
            )
            return int(result.rowcount)

        return self._transaction(write)

    def count_history_before(self, cutoff: datetime) -> tuple[int, int]:
        def read(connection: Connection) -> tuple[int, int]:
            attempts = connection.execute(
                select(func.count()).select_from(Attempt).where(Attempt.attempted_at < cutoff)
            ).scalar_one()
            runs = connection.execute(
                select(func.count()).select_from(Run).where(*_prunable_runs(cutoff))
            ).scalar_one()
            return int(attempts), int(runs)

        return self._read(read)

    def prune_history(self, cutoff: datetime) -> tuple[int, int]:
        """Delete attempts and finished runs before cutoff; each command's last run stays."""

        def write(connection: Connection) -> tuple[int, int]:
            attempts = connection.execute(delete(Attempt).where(Attempt.attempted_at < cutoff))
            runs = connection.execute(delete(Run).where(*_prunable_runs(cutoff)))
            return int(attempts.rowcount), int(runs.rowcount)

        return self._transaction(write)

    # --- keys -------------------------------------------------------------------

    def token_batches(self, batch_size: int) -> Iterator[list[TokenCiphertexts]]:
        """Every stored ciphertext pair, in id order, a batch at a time."""
        after = 0
        while True:
            query = (
                select(
                    Account.id,
                    Account.token_generation,
                    Account.access_token_ciphertext,
                    Account.refresh_token_ciphertext,
                )
                .where(Account.id > after, _has_tokens())
                .order_by(Account.id)
                .limit(batch_size)
            )
            rows = self._rows(query)
            if not rows:
                return
            yield [TokenCiphertexts(**row._mapping) for row in rows]
            after = rows[-1].id

    def replace_ciphertexts(self, batch: Sequence[TokenCiphertexts]) -> int:
        """Write re-encrypted ciphertexts of unchanged tokens; skips rows refreshed meanwhile.

        The generation is kept: the tokens are the same, only their encryption changed.
        """

        def write(connection: Connection) -> int:
            written = 0
            for row in batch:
                result = connection.execute(
                    update(Account)
                    .where(Account.id == row.id, Account.token_generation == row.token_generation)
                    .values(
                        access_token_ciphertext=row.access_token_ciphertext,
                        refresh_token_ciphertext=row.refresh_token_ciphertext,
                    )
                )
                written += result.rowcount
            return written

        return self._transaction(write)

    # --- runs -------------------------------------------------------------------

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
                        started_at=self._clock(),
                        counts="{}",
                    )
                    .returning(Run.id)
                ).scalar_one()
            )

        return self._transaction(write)

    def finish_run(
        self,
        run_id: int,
        *,
        outcome: str,
        exit_code: int,
        counts: dict[str, int],
        message: str | None,
    ) -> None:
        def write(connection: Connection) -> None:
            connection.execute(
                update(Run)
                .where(Run.id == run_id)
                .values(
                    finished_at=self._clock(),
                    outcome=outcome,
                    exit_code=exit_code,
                    counts=json.dumps(counts, sort_keys=True),
                    message=message,
                )
            )

        self._transaction(write)

    def last_runs(self) -> dict[str, RunView]:
        """The newest run of each command, finished or not."""
        newest = select(Run.command, func.max(Run.id).label("id")).group_by(Run.command).subquery()
        query = select(*_RUN_COLUMNS).join(newest, Run.id == newest.c.id)
        return {row.command: _run_view(row) for row in self._rows(query)}

    def last_successful_runs(self) -> dict[str, RunView]:
        newest = (
            select(Run.command, func.max(Run.id).label("id"))
            .where(Run.outcome == "ok")
            .group_by(Run.command)
            .subquery()
        )
        query = select(*_RUN_COLUMNS).join(newest, Run.id == newest.c.id)
        return {row.command: _run_view(row) for row in self._rows(query)}

    # --- plumbing ---------------------------------------------------------------

    def _read(self, work: Callable[[Connection], T]) -> T:
        with _translated(), self.engine.connect() as connection:
            return work(connection)

    def _rows(self, query: Executable) -> Sequence[Row[Any]]:
        return self._read(lambda connection: connection.execute(query).all())

    def _row(self, query: Executable) -> Row[Any] | None:
        return self._read(lambda connection: connection.execute(query).one_or_none())

    def _scalar(self, query: Executable) -> Any:
        return self._read(lambda connection: connection.execute(query).scalar_one_or_none())

    def _transaction(self, work: Callable[[Connection], T]) -> T:
        with _translated(), self.engine.begin() as connection:
            return work(connection)

    def _save_grant(
        self,
        connection: Connection,
        account_id: int,
        tokens: NewTokens,
        status: AccountStatus,
        error: str | None,
    ) -> str:
        result = connection.execute(
            _SAVE_GRANT,
            {
                "b_id": account_id,
                "b_access": tokens.access_token_ciphertext,
                "b_access_expires": tokens.access_expires_at,
                # None keeps the stored value (COALESCE): never a token overwritten with nothing.
                "b_refresh": tokens.refresh_token_ciphertext,
                "b_refresh_expires": tokens.refresh_expires_at,
                "b_scope": tokens.scope,
                "b_status": status.value,
                "b_error": error,
                "b_now": self._clock(),
            },
        )
        return WriteResult.WRITTEN if result.rowcount else WriteResult.GONE

    def _conditional_update(
        self,
        connection: Connection,
        account: ClaimedAccount,
        statement: Executable,
        parameters: dict[str, Any],
    ) -> str:
        """Write only if nobody stored a newer token pair since the claim read the row."""
        result = connection.execute(
            statement,
            {
                **parameters,
                "b_id": account.id,
                "b_generation": account.token_generation,
                "b_now": self._clock(),
            },
        )
        if result.rowcount:
            return WriteResult.WRITTEN
        exists = connection.execute(
            select(Account.id).where(Account.id == account.id)
        ).scalar_one_or_none()
        return WriteResult.LOST_RACE if exists is not None else WriteResult.GONE

    def _insert_attempts(
        self,
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
                        "error_code": attempt.error_code,
                        "log_id": attempt.log_id,
                        "duration_ms": attempt.duration_ms,
                        "message": attempt.message,
                    }
                    for attempt in attempts
                ],
            )


# ----------------------------------------------------------------------------- helpers


@contextmanager
def _translated() -> Iterator[None]:
    """Database driver errors become DatabaseError, with a message safe to show."""
    try:
        yield
    except DBAPIError as error:
        raise DatabaseError(f"database error: {describe_db_error(error)}") from error


def _close_quietly(connection: Connection) -> None:
    """Close a connection that may be broken; its transaction, if any, is rolled back."""
    try:
        connection.close()
    except DBAPIError as error:
        log.debug("closing a broken database connection: %s", describe_db_error(error))


def _due_conditions(due: Due) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [
        IS_ACTIVE,
        Account.access_expires_at <= due.horizon,
        Account.refresh_expires_at > due.now,
        Account.next_attempt_at <= due.now,
        Account.refresh_token_ciphertext.is_not(None),
        or_(Account.last_refreshed_at.is_(None), Account.last_refreshed_at < due.now),
    ]
    if due.shard is not None:
        conditions.append(Account.id % due.shard.count == due.shard.index)
    return conditions


def _past_refresh_expiry(now: datetime) -> list[ColumnElement[bool]]:
    """Not marked expired yet, but the refresh token has run out (cleanup will mark it)."""
    return [Account.status != AccountStatus.EXPIRED.value, Account.refresh_expires_at <= now]


def _dead_token_conditions() -> list[ColumnElement[bool]]:
    return [Account.status == AccountStatus.EXPIRED.value, _has_tokens()]


def _has_tokens() -> ColumnElement[bool]:
    return or_(
        Account.access_token_ciphertext.is_not(None),
        Account.refresh_token_ciphertext.is_not(None),
    )


def _prunable_runs(cutoff: datetime) -> list[ColumnElement[bool]]:
    newest = select(func.max(Run.id)).group_by(Run.command)
    return [Run.started_at < cutoff, Run.finished_at.is_not(None), Run.id.not_in(newest)]


def _new_account_values(account: NewAccount, now: datetime) -> dict[str, Any]:
    return {
        "open_id": account.open_id,
        "label": account.label,
        "access_token_ciphertext": account.access_token_ciphertext,
        "refresh_token_ciphertext": account.refresh_token_ciphertext,
        "access_expires_at": account.access_expires_at,
        "refresh_expires_at": account.refresh_expires_at,
        "scope": account.scope,
        "status": AccountStatus.ACTIVE.value,
        "token_generation": 1,
        "consecutive_failures": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
    }


def _reimport_values(account: NewAccount, now: datetime) -> dict[str, Any]:
    from sqlalchemy import case

    values: dict[str, Any] = {
        "access_token_ciphertext": account.access_token_ciphertext,
        "refresh_token_ciphertext": account.refresh_token_ciphertext,
        "access_expires_at": account.access_expires_at,
        "refresh_expires_at": account.refresh_expires_at,
        "scope": account.scope,
        "status": case(
            (Account.status == AccountStatus.DISABLED.value, AccountStatus.DISABLED.value),
            else_=AccountStatus.ACTIVE.value,
        ),
        "token_generation": Account.token_generation + 1,
        "last_error": None,
        "consecutive_failures": 0,
        "next_attempt_at": now,
        "updated_at": now,
    }
    if account.label is not None:
        values["label"] = account.label
    return values


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


_VIEW_COLUMNS = (
    Account.id,
    Account.open_id,
    Account.label,
    Account.status,
    Account.scope,
    Account.access_expires_at,
    Account.refresh_expires_at,
    Account.last_refreshed_at,
    Account.last_error,
    Account.consecutive_failures,
    Account.next_attempt_at,
    Account.created_at,
    Account.updated_at,
    Account.refresh_token_ciphertext.is_not(None).label("has_tokens"),
)
# In the order of Candidate's fields: rows become candidates positionally (it is faster).
_CANDIDATE_COLUMNS = tuple(getattr(Account, column.name) for column in fields(Candidate))
_CLAIM_COLUMNS = (
    Account.id,
    Account.open_id,
    Account.status,
    Account.access_expires_at,
    Account.refresh_expires_at,
    Account.consecutive_failures,
    Account.token_generation,
    Account.access_token_ciphertext,
    Account.refresh_token_ciphertext,
)
_ATTEMPT_COLUMNS = (
    Attempt.id,
    Attempt.account_id,
    Attempt.run_id,
    Attempt.attempted_at,
    Attempt.outcome,
    Attempt.http_status,
    Attempt.error_code,
    Attempt.log_id,
    Attempt.duration_ms,
    Attempt.message,
)
_RUN_COLUMNS = (
    Run.id,
    Run.command,
    Run.host,
    Run.pid,
    Run.shard,
    Run.started_at,
    Run.finished_at,
    Run.outcome,
    Run.exit_code,
    Run.counts,
    Run.message,
)


# The statements run once per refreshed account, built once: SQLAlchemy then reuses their
# compiled form instead of rebuilding and re-keying a statement for every account.
_SAVE_GRANT = (
    update(Account)
    .where(Account.id == bindparam("b_id"))
    .values(
        access_token_ciphertext=bindparam("b_access"),
        access_expires_at=bindparam("b_access_expires", type_=UTCDateTime()),
        refresh_token_ciphertext=func.coalesce(
            bindparam("b_refresh", type_=Text()), Account.refresh_token_ciphertext
        ),
        refresh_expires_at=func.coalesce(
            bindparam("b_refresh_expires", type_=UTCDateTime()), Account.refresh_expires_at
        ),
        scope=func.coalesce(bindparam("b_scope", type_=Text()), Account.scope),
        status=bindparam("b_status"),
        token_generation=Account.token_generation + 1,
        last_refreshed_at=bindparam("b_now", type_=UTCDateTime()),
        last_error=bindparam("b_error"),
        consecutive_failures=0,
        next_attempt_at=bindparam("b_now", type_=UTCDateTime()),
        updated_at=bindparam("b_now", type_=UTCDateTime()),
    )
)
_SAME_GENERATION = and_(
    Account.id == bindparam("b_id"), Account.token_generation == bindparam("b_generation")
)
_MARK_EXPIRED = (
    update(Account)
    .where(_SAME_GENERATION)
    .values(
        status=AccountStatus.EXPIRED.value,
        last_error=bindparam("b_error"),
        updated_at=bindparam("b_now", type_=UTCDateTime()),
    )
)
_RECORD_FAILURE = (
    update(Account)
    .where(_SAME_GENERATION)
    .values(
        last_error=bindparam("b_error"),
        consecutive_failures=Account.consecutive_failures + 1,
        next_attempt_at=bindparam("b_next_attempt", type_=UTCDateTime()),
        updated_at=bindparam("b_now", type_=UTCDateTime()),
    )
)
_INSERT_ATTEMPT = insert(Attempt)
_CLAIMS: dict[tuple[bool, bool, bool], Select[Any]] = {}


def _claim_statement(due: bool, sharded: bool, lock_row: bool) -> Select[Any]:
    """SELECT of one account by id; with `due`, only if it still matches the due conditions;
    with `lock_row`, FOR UPDATE SKIP LOCKED."""
    key = (due, sharded, lock_row)
    if key not in _CLAIMS:
        query = select(*_CLAIM_COLUMNS).where(Account.id == bindparam("b_id"))
        if due:
            query = query.where(
                IS_ACTIVE,
                Account.access_expires_at <= bindparam("b_horizon", type_=UTCDateTime()),
                Account.refresh_expires_at > bindparam("b_due_now", type_=UTCDateTime()),
                Account.next_attempt_at <= bindparam("b_due_now", type_=UTCDateTime()),
                Account.refresh_token_ciphertext.is_not(None),
                or_(
                    Account.last_refreshed_at.is_(None),
                    Account.last_refreshed_at < bindparam("b_due_now", type_=UTCDateTime()),
                ),
            )
        if sharded:
            query = query.where(
                Account.id % bindparam("b_shard_count") == bindparam("b_shard_index")
            )
        if lock_row:
            query = query.with_for_update(skip_locked=True)
        _CLAIMS[key] = cast("Select[Any]", query)
    return _CLAIMS[key]


def _due_parameters(due: Due) -> dict[str, Any]:
    parameters: dict[str, Any] = {"b_horizon": due.horizon, "b_due_now": due.now}
    if due.shard is not None:
        parameters.update(b_shard_count=due.shard.count, b_shard_index=due.shard.index)
    return parameters


def _account_view(row: Any) -> AccountView:
    return AccountView(**{**row._mapping, "has_tokens": bool(row.has_tokens)})


def _claimed(row: Any) -> ClaimedAccount:
    return ClaimedAccount(**row._mapping)


def _run_view(row: Any) -> RunView:
    counts = json.loads(row.counts or "{}")
    return RunView(**{**row._mapping, "counts": counts})
