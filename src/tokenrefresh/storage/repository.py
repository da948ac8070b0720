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
from dataclasses import dataclass, fields
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
    case,
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
from tokenrefresh.errors import DatabaseError, ImportFileError
from tokenrefresh.scrub import safe_text, scrub
from tokenrefresh.storage.engine import describe_db_error
from tokenrefresh.storage.models import (
    Account,
    AccountStatus,
    Attempt,
    BigId,
    KeyCheck,
    Run,
    SpentRefreshToken,
    UTCDateTime,
)
from tokenrefresh.storage.records import (
    AccountView,
    AttemptRecord,
    AttemptView,
    Candidate,
    ClaimedAccount,
    Due,
    ImportCounts,
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

# Longer than the longest refresh token lifetime TikTok has documented (365 days).
SPENT_TOKEN_RETENTION = timedelta(days=400)
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
    ) -> WriteResult:
        """Store the new pair and commit, retrying on a fresh connection if this one broke.

        The new refresh token is the only valid one: losing it disconnects the user. The
        write is a compare-and-set against the row the claim read: if the account was
        re-imported meanwhile (a newer consent), that pair wins and LOST_RACE comes back.
        """
        repository = self._repository
        work = self._with_attempts(
            lambda connection: repository._save_grant(
                connection, self.account, tokens, status, error
            ),
            attempts,
        )
        try:
            return self._commit(self._end(), work)
        except DatabaseError as error_:
            last_error = error_.message
            log.warning(
                "account %s: storing the new token failed (%s); retrying on a new connection",
                self.account.id,
                last_error,
            )
        delay = GRANT_WRITE_BACKOFF
        for attempt in range(2, GRANT_WRITE_ATTEMPTS + 1):
            time.sleep(delay)
            delay *= 2
            try:
                return repository._transaction(work)
            except DatabaseError as error_:
                last_error = error_.message
                log.warning(
                    "account %s: storing the new token failed again (attempt %d of %d): %s",
                    self.account.id,
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
        return self._conditional(_MARK_EXPIRED, {"b_error": _stored_text(reason)}, attempts)

    def record_failure(
        self, reason: str, next_attempt_at: datetime, attempts: Sequence[AttemptRecord]
    ) -> WriteResult:
        """Count a failed refresh and push the next attempt back; the account stays active."""
        return self._conditional(
            _RECORD_FAILURE,
            {"b_error": _stored_text(reason), "b_next_attempt": next_attempt_at},
            attempts,
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
    ) -> WriteResult:
        repository = self._repository
        work = self._with_attempts(
            lambda connection: repository._conditional_update(
                connection, self.account, statement, parameters
            ),
            attempts,
        )
        return self._commit(self._end(), work)

    def _with_attempts(
        self, write: Callable[[Connection], WriteResult], attempts: Sequence[AttemptRecord]
    ) -> Callable[[Connection], WriteResult]:
        """The write, plus the attempt history in the same transaction."""
        repository = self._repository

        def work(connection: Connection) -> WriteResult:
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
        self, held: tuple[Connection, Any] | None, work: Callable[[Connection], WriteResult]
    ) -> WriteResult:
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

    def import_accounts(
        self, accounts: Sequence[NewAccount], *, force: bool = False
    ) -> ImportCounts:
        """Upsert by open_id in one transaction, refusing stale pairs unless `force`.

        A re-import is a new consent: the account becomes active again with fresh tokens,
        unless it was disabled by hand, which stays the operator's decision. Refused (the
        whole import, naming the lines): a refresh token this tool already rotated away
        from, or a pair issued before the one stored. The same refresh token as stored
        changes nothing but the label. On PostgreSQL the rows are locked first, so an
        import waits for an in-flight refresh of the same account and then sees its result.
        """
        now = self._clock()

        def write(connection: Connection) -> ImportCounts:
            stored = self._stored_for_import(connection, [a.open_id for a in accounts])
            if not force:
                refusals = self._import_refusals(connection, accounts, stored)
                if refusals:
                    raise ImportFileError(_refusal_message(refusals))
            new_rows = [
                _new_account_values(account, now)
                for account in accounts
                if account.open_id not in stored
            ]
            if new_rows:
                connection.execute(insert(Account), new_rows)
            updated = unchanged = 0
            for account in accounts:
                if account.open_id not in stored:
                    continue
                same_token = (
                    stored[account.open_id].fingerprint == account.refresh_token_fingerprint
                )
                if same_token and not force:
                    unchanged += 1
                    if account.label is not None:
                        connection.execute(
                            update(Account)
                            .where(Account.open_id == account.open_id)
                            .values(label=account.label, updated_at=now)
                        )
                    continue
                updated += 1
                connection.execute(
                    update(Account)
                    .where(Account.open_id == account.open_id)
                    .values(_reimport_values(account, now))
                )
            return ImportCounts(created=len(new_rows), updated=updated, unchanged=unchanged)

        try:
            return self._transaction(write)
        except DatabaseError as error:
            if isinstance(error.__cause__, IntegrityError):
                raise DatabaseError(
                    "the import clashed with a concurrent change of the same open_id; "
                    "nothing was imported, run it again"
                ) from None
            raise

    def _stored_for_import(
        self, connection: Connection, open_ids: Sequence[str]
    ) -> dict[str, _StoredPair]:
        """What is stored for these open_ids; on PostgreSQL with the rows locked, in order."""
        stored: dict[str, _StoredPair] = {}
        for chunk in _chunks(sorted(open_ids), 500):
            query = (
                select(
                    Account.open_id,
                    Account.refresh_token_fingerprint,
                    Account.tokens_issued_at,
                    Account.last_refreshed_at,
                )
                .where(Account.open_id.in_(chunk))
                .order_by(Account.open_id)
            )
            if self.holds_row_locks:
                query = query.with_for_update()
            for row in connection.execute(query):
                stored[row.open_id] = _StoredPair(
                    row.refresh_token_fingerprint,
                    max(
                        (t for t in (row.tokens_issued_at, row.last_refreshed_at) if t),
                        default=None,
                    ),
                )
        return stored

    def _import_refusals(
        self,
        connection: Connection,
        accounts: Sequence[NewAccount],
        stored: dict[str, _StoredPair],
    ) -> list[str]:
        spent: dict[str, datetime] = {}
        fingerprints = sorted({account.refresh_token_fingerprint for account in accounts})
        for chunk in _chunks(fingerprints, 500):
            rows = connection.execute(
                select(SpentRefreshToken.fingerprint, SpentRefreshToken.spent_at).where(
                    SpentRefreshToken.fingerprint.in_(chunk)
                )
            )
            spent.update((row.fingerprint, row.spent_at) for row in rows)
        refusals: list[str] = []
        for account in accounts:
            pair = stored.get(account.open_id)
            if account.refresh_token_fingerprint in spent:
                refusals.append(
                    f"line {account.line}: open_id {account.open_id!r}: this refresh token was "
                    "already used, and replaced by a newer one, on "
                    f"{_when(spent[account.refresh_token_fingerprint])}; importing it would "
                    "overwrite the newer pair (the same file imported twice?)"
                )
            elif (
                pair is not None
                and account.issued_at_stated
                and pair.issued_at is not None
                and pair.fingerprint != account.refresh_token_fingerprint
                and account.issued_at < pair.issued_at
            ):
                refusals.append(
                    f"line {account.line}: open_id {account.open_id!r}: issued_at "
                    f"{_when(account.issued_at)} is older than the pair stored, from "
                    f"{_when(pair.issued_at)}"
                )
        return refusals

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

    def disable(self, account_id: int) -> bool:
        """Exclude an account from refreshing by hand; False if there is no such account."""
        now = self._clock()

        def write(connection: Connection) -> bool:
            result = connection.execute(
                update(Account)
                .where(Account.id == account_id)
                .values(status=AccountStatus.DISABLED.value, updated_at=now)
            )
            return bool(result.rowcount)

        return self._transaction(write)

    def enable(self, account_id: int) -> bool:
        """Make an account active again and clear its back-off, only if it has a refresh token
        that is still in date; False otherwise (or if there is no such account)."""
        now = self._clock()

        def write(connection: Connection) -> bool:
            result = connection.execute(
                update(Account)
                .where(
                    Account.id == account_id,
                    Account.refresh_token_ciphertext.is_not(None),
                    Account.refresh_expires_at > now,
                )
                .values(
                    status=AccountStatus.ACTIVE.value,
                    consecutive_failures=0,
                    next_attempt_at=now,
                    last_error=None,
                    updated_at=now,
                )
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
            without_tokens = connection.execute(
                select(func.count()).where(*_without_tokens(now))  # ix_accounts_without_tokens
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
                without_tokens=without_tokens,
                soonest_access_expiry=soonest_access,
                soonest_refresh_expiry=soonest_refresh,
            )

        return self._read(read)

    # --- cleanup ----------------------------------------------------------------

    def reconnect_needed(self, now: datetime, limit: int) -> list[AccountView]:
        """Accounts whose user must reconnect: expired, past their refresh token's expiry, or
        without a stored refresh token."""
        query = (
            select(*_VIEW_COLUMNS)
            .where(
                or_(
                    Account.status == AccountStatus.EXPIRED.value,
                    and_(*_past_refresh_expiry(now)),
                    and_(*_without_tokens(now)),
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
        """Delete attempts and finished runs before cutoff; each command's last run stays.

        Spent-token fingerprints go after SPENT_TOKEN_RETENTION, whatever the cutoff: an
        import file older than that holds tokens long past any refresh token's lifetime.
        """
        spent_cutoff = self._clock() - SPENT_TOKEN_RETENTION

        def write(connection: Connection) -> tuple[int, int]:
            attempts = connection.execute(delete(Attempt).where(Attempt.attempted_at < cutoff))
            runs = connection.execute(delete(Run).where(*_prunable_runs(cutoff)))
            connection.execute(
                delete(SpentRefreshToken).where(SpentRefreshToken.spent_at < spent_cutoff)
            )
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

    def any_ciphertext(self) -> str | None:
        """One stored ciphertext, any account: what the keys must be able to read."""
        query = (
            select(func.coalesce(Account.refresh_token_ciphertext, Account.access_token_ciphertext))
            .where(_has_tokens())
            .limit(1)
        )
        value: str | None = self._scalar(query)
        return value

    def key_check(self) -> str | None:
        """The stored key check value (a known text encrypted with the keys), if any."""
        value: str | None = self._scalar(select(KeyCheck.ciphertext).where(KeyCheck.id == 1))
        return value

    def save_key_check(self, ciphertext: str, *, replacing: str | None) -> bool:
        """Store the key check value: a first one (`replacing` None; a concurrent first one
        wins), or in place of `replacing` (compare-and-set). True if this one was stored."""
        now = self._clock()

        def write(connection: Connection) -> bool:
            if replacing is None:
                if connection.execute(select(KeyCheck.id)).first() is not None:
                    return False
                connection.execute(
                    insert(KeyCheck).values(id=1, ciphertext=ciphertext, updated_at=now)
                )
                return True
            result = connection.execute(
                update(KeyCheck)
                .where(KeyCheck.id == 1, KeyCheck.ciphertext == replacing)
                .values(ciphertext=ciphertext, updated_at=now)
            )
            return bool(result.rowcount)

        try:
            return self._transaction(write)
        except DatabaseError as error:
            if isinstance(error.__cause__, IntegrityError):
                return False  # another process stored the first one meanwhile
            raise

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
                    message=_stored_text(message),
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
        account: ClaimedAccount,
        tokens: NewTokens,
        status: AccountStatus,
        error: str | None,
    ) -> WriteResult:
        now = self._clock()
        if tokens.refresh_token_ciphertext is not None:
            # The imported refresh token (if it still is the stored one) is spent from now on.
            connection.execute(
                _spent_insert(connection.dialect.name),
                {"b_id": account.id, "b_generation": account.token_generation, "b_now": now},
            )
        result = connection.execute(
            _SAVE_GRANT,
            {
                "b_id": account.id,
                "b_generation": account.token_generation,
                # None keeps the stored value (COALESCE): never a token overwritten with nothing.
                "b_access": tokens.access_token_ciphertext,
                "b_access_expires": tokens.access_expires_at,
                "b_refresh": tokens.refresh_token_ciphertext,
                "b_refresh_expires": tokens.refresh_expires_at,
                "b_scope": tokens.scope,
                "b_status": status.value,
                "b_error": _stored_text(error),
                "b_now": now,
            },
        )
        if result.rowcount:
            return WriteResult.WRITTEN
        return self._race_or_gone(connection, account.id)

    def _conditional_update(
        self,
        connection: Connection,
        account: ClaimedAccount,
        statement: Executable,
        parameters: dict[str, Any],
    ) -> WriteResult:
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
        return self._race_or_gone(connection, account.id)

    @staticmethod
    def _race_or_gone(connection: Connection, account_id: int) -> WriteResult:
        """Why a compare-and-set wrote nothing: a newer pair was stored, or the row is gone."""
        exists = connection.execute(
            select(Account.id).where(Account.id == account_id)
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
                        "error_code": _stored_text(attempt.error_code, 64),
                        "log_id": _stored_text(attempt.log_id, 128),
                        "duration_ms": attempt.duration_ms,
                        "message": _stored_text(attempt.message),
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


def _without_tokens(now: datetime) -> list[ColumnElement[bool]]:
    """Not expired, refresh token in date, but no token stored: nothing can refresh it.

    (Disjoint from the expired and the past-expiry accounts, so the three counts add up.)
    """
    return [
        Account.refresh_token_ciphertext.is_(None),
        Account.status != AccountStatus.EXPIRED.value,
        Account.refresh_expires_at > now,
    ]


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
        "refresh_token_fingerprint": account.refresh_token_fingerprint,
        "tokens_issued_at": account.issued_at,
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
    values: dict[str, Any] = {
        "access_token_ciphertext": account.access_token_ciphertext,
        "refresh_token_ciphertext": account.refresh_token_ciphertext,
        "refresh_token_fingerprint": account.refresh_token_fingerprint,
        "tokens_issued_at": account.issued_at,
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


@dataclass(frozen=True)
class _StoredPair:
    """What an import compares a line with: the stored token's fingerprint, and when the
    stored pair was issued (its import or its last refresh)."""

    fingerprint: str | None
    issued_at: datetime | None


MAX_LISTED_REFUSALS = 20


def _refusal_message(refusals: Sequence[str]) -> str:
    shown = list(refusals[:MAX_LISTED_REFUSALS])
    if len(refusals) > len(shown):
        shown.append(f"... and {len(refusals) - len(shown)} more")
    return (
        "nothing was imported: these lines would replace a newer token pair with an older one "
        "(use --force if that is really what you want):\n  " + "\n  ".join(shown)
    )


def _stored_text(text: str | None, limit: int = 2000) -> str | None:
    """The last line of defence for text columns: no fragment of a registered secret, no
    control character or NUL (PostgreSQL refuses those), bounded to fit the column."""
    return None if text is None else safe_text(scrub(text[: limit * 2]), limit)


def _when(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


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
        tokens_issued_at=bindparam("b_now", type_=UTCDateTime()),
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
_SPENT_INSERTS: dict[str, Executable] = {}


def _spent_insert(dialect: str) -> Executable:
    """INSERT the account's imported fingerprint into spent_refresh_tokens, if it has one;
    a fingerprint already there is left alone."""
    if dialect not in _SPENT_INSERTS:
        source = select(
            Account.refresh_token_fingerprint,
            Account.id,
            bindparam("b_now", type_=UTCDateTime()),
        ).where(_SAME_GENERATION, Account.refresh_token_fingerprint.is_not(None))
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
