"""Accounts: import (never backwards), look up, enable, disable, remove."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from itertools import islice
from typing import Any

from sqlalchemy import Connection, bindparam, case, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from tokenrefresh.base import defaults
from tokenrefresh.base.defaults import FAILING_AFTER
from tokenrefresh.base.scopes import granted_scopes
from tokenrefresh.errors import DatabaseError, ImportFileError
from tokenrefresh.storage.database import Database, chunks
from tokenrefresh.storage.models import Account, SpentRefreshToken
from tokenrefresh.storage.outbox import record_recovered
from tokenrefresh.storage.records import (
    AccountStatus,
    AccountView,
    ImportCounts,
    NewAccount,
    TokenState,
)
from tokenrefresh.storage.sql import ACCOUNT_VIEW_COLUMNS, account_view, stored_text

_TOKEN_STATE_COLUMNS = (
    *(
        getattr(Account, name.name)
        for name in fields(TokenState)
        if name.name != "has_refresh_token"
    ),
    Account.refresh_token_ciphertext.is_not(None).label("has_refresh_token"),
)
# Built once: an app reads tokens in a loop, and rebuilding the statement each time cost
# as much as the round trip.
_TOKEN_STATE_BY_ID = select(*_TOKEN_STATE_COLUMNS).where(Account.id == bindparam("b_id"))
_TOKEN_STATE_BY_OPEN_ID = select(*_TOKEN_STATE_COLUMNS).where(
    Account.app == bindparam("b_app"), Account.open_id == bindparam("b_open_id")
)

_PROBE_TEXT = "tokenrefresh write probe"  # written in place of the ciphertexts, never committed
_PROBE_GRANT = (
    update(Account)
    .where(Account.id == bindparam("b_id"))
    .values(
        token_generation=Account.token_generation + 1,
        access_token_ciphertext=_PROBE_TEXT,
        refresh_token_ciphertext=_PROBE_TEXT,
        updated_at=Account.updated_at,
    )
)
_PROBE_COMMIT = (
    update(Account).where(Account.id == bindparam("b_id")).values(updated_at=Account.updated_at)
)

__all__ = ["AccountQueries"]


class AccountQueries(Database):
    """Accounts as the `accounts` commands and the library see them."""

    def import_accounts(
        self, accounts: Sequence[NewAccount], *, force: bool = False, app: str = defaults.APP
    ) -> ImportCounts:
        """Upsert by open_id within `app` in one transaction, refusing stale pairs unless `force`.

        A re-import is a new consent: the account becomes active again with fresh tokens,
        unless it was disabled by hand, which stays the operator's decision. Refused (the
        whole import, naming the lines): a refresh token this tool already rotated away
        from, or a pair issued before the one stored. The same refresh token as stored
        changes nothing but the label. On PostgreSQL the rows are locked first, so an
        import waits for an in-flight refresh of the same account and then sees its result.
        """
        now = self.clock()

        def write(connection: Connection) -> ImportCounts:
            stored = self._stored_for_import(connection, app, [a.open_id for a in accounts])
            if not force:
                refusals = self._import_refusals(connection, accounts, stored)
                if refusals:
                    raise ImportFileError(_refusal_message(refusals))
            new_rows = [
                {**_new_account_values(account, now), "app": app}
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
                            .where(Account.id == stored[account.open_id].id)
                            .values(label=account.label, updated_at=now)
                        )
                    continue
                updated += 1
                connection.execute(
                    update(Account)
                    .where(Account.id == stored[account.open_id].id)
                    .values(_reimport_values(account, now))
                )
                if stored[account.open_id].needed_its_user:
                    record_recovered(connection, stored[account.open_id].id, now, "a new consent")
            return ImportCounts(created=len(new_rows), updated=updated, unchanged=unchanged)

        try:
            return self.transaction(write)
        except DatabaseError as error:
            if isinstance(error.__cause__, IntegrityError):
                raise DatabaseError(
                    "the import clashed with a concurrent change of the same open_id; "
                    "nothing was imported, run it again"
                ) from None
            raise

    def _stored_for_import(
        self, connection: Connection, app: str, open_ids: Sequence[str]
    ) -> dict[str, _StoredPair]:
        """What `app` stores for these open_ids; on PostgreSQL with the rows locked, in order."""
        stored: dict[str, _StoredPair] = {}
        for chunk in chunks(sorted(open_ids), 500):
            query = (
                select(
                    Account.id,
                    Account.open_id,
                    Account.status,
                    Account.consecutive_failures,
                    Account.refresh_token_fingerprint,
                    Account.tokens_issued_at,
                    Account.last_refreshed_at,
                )
                .where(Account.app == app, Account.open_id.in_(chunk))
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
                    id=row.id,
                    needed_its_user=_recovers(row.status, row.consecutive_failures),
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
        for chunk in chunks(fingerprints, 500):
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
        self,
        status: AccountStatus | None = None,
        limit: int | None = None,
        *,
        missing_scopes: Collection[str] = (),
    ) -> list[AccountView]:
        """Accounts by id; with `missing_scopes`, only those whose stored scope lacks at
        least one of them (read as `scopes.granted_scopes` reads it, the same on every
        database: a LIKE would be case-blind on SQLite only)."""
        query = select(*ACCOUNT_VIEW_COLUMNS).order_by(Account.id)
        if status is not None:
            query = query.where(Account.status == status.value)
        if not missing_scopes:
            return [account_view(row) for row in self.rows(query.limit(limit))]
        wanted = frozenset(missing_scopes)
        lacking = (
            account_view(row) for row in self.rows(query) if wanted - granted_scopes(row.scope)
        )
        return list(islice(lacking, limit))

    def get_account(self, account_id: int) -> AccountView | None:
        query = select(*ACCOUNT_VIEW_COLUMNS).where(Account.id == account_id)
        row = self.row(query)
        return account_view(row) if row is not None else None

    def find_account(self, open_id: str, app: str = defaults.APP) -> AccountView | None:
        """The account of user `open_id` within `app` (a user id is unique only there)."""
        query = select(*ACCOUNT_VIEW_COLUMNS).where(Account.app == app, Account.open_id == open_id)
        row = self.row(query)
        return account_view(row) if row is not None else None

    def token_state(
        self, account_id: int | None = None, open_id: str | None = None, app: str = defaults.APP
    ) -> TokenState | None:
        """One account's token state by id, or by user id within its app (the primary key
        or a unique index)."""
        parameters: dict[str, int | str | None]
        if open_id is None:
            query, parameters = _TOKEN_STATE_BY_ID, {"b_id": account_id}
        else:
            query, parameters = _TOKEN_STATE_BY_OPEN_ID, {"b_app": app, "b_open_id": open_id}
        row = self.read(lambda c: c.execute(query, parameters).one_or_none())
        return TokenState(**row._mapping) if row is not None else None

    def takes_token_writes(self, account_id: int) -> bool:
        """Whether the database takes a write of this account's tokens now, changing
        nothing: in one transaction, a grant-shaped write of its row (new token columns, a
        new generation) undone by a savepoint, then a write of the row that changes no
        value, committed (a trigger, a full disk, a broken connection all fail it)."""

        def probe(connection: Connection) -> None:
            undone = connection.begin_nested()
            connection.execute(_PROBE_GRANT, {"b_id": account_id})
            undone.rollback()
            connection.execute(_PROBE_COMMIT, {"b_id": account_id})

        try:
            self.transaction(probe)
        except DatabaseError:
            return False
        return True

    def mark_revoked(self, account_id: int, reason: str) -> bool:
        """The account's access was revoked: its tokens erased, never refreshed again (a new
        connect or import makes it active). False if there is no such account."""
        now = self.clock()

        def write(connection: Connection) -> bool:
            result = connection.execute(
                update(Account)
                .where(Account.id == account_id)
                .values(
                    status=AccountStatus.REVOKED.value,
                    access_token_ciphertext=None,
                    refresh_token_ciphertext=None,
                    token_generation=Account.token_generation + 1,
                    last_error=stored_text(reason),
                    lease_owner=None,
                    lease_expires_at=None,
                    updated_at=now,
                )
            )
            return bool(result.rowcount)

        return self.transaction(write)

    def access_token_ciphertext(self, account_id: int) -> str | None:
        query = select(Account.access_token_ciphertext).where(Account.id == account_id)
        value: str | None = self.scalar(query)
        return value

    def existing_ids(self, account_ids: Iterable[int]) -> set[int]:
        ids = sorted(set(account_ids))
        found: set[int] = set()
        for chunk in chunks(ids, 500):
            query = select(Account.id).where(Account.id.in_(chunk))
            found.update(row.id for row in self.rows(query))
        return found

    def remove_account(self, account_id: int) -> bool:
        def write(connection: Connection) -> bool:
            result = connection.execute(delete(Account).where(Account.id == account_id))
            return bool(result.rowcount)

        return self.transaction(write)

    def disable(self, account_id: int) -> bool:
        """Exclude an account from refreshing by hand; False if there is no such account."""
        now = self.clock()

        def write(connection: Connection) -> bool:
            result = connection.execute(
                update(Account)
                .where(Account.id == account_id)
                .values(status=AccountStatus.DISABLED.value, updated_at=now)
            )
            return bool(result.rowcount)

        return self.transaction(write)

    def enable(self, account_id: int) -> bool:
        """Make an account active again and clear its back-off, only if it has a refresh token
        that is still in date; False otherwise (or if there is no such account)."""
        now = self.clock()

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

        return self.transaction(write)


def _new_account_values(account: NewAccount, now: datetime) -> dict[str, Any]:
    return {
        "open_id": account.open_id,
        "label": account.label,
        **_pair_values(account),
        "status": AccountStatus.ACTIVE.value,
        "token_generation": 1,
        "consecutive_failures": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
    }


def _reimport_values(account: NewAccount, now: datetime) -> dict[str, Any]:
    """A new consent: the new pair, the account active again (unless disabled by hand),
    its failure count and back-off cleared, its label replaced only if the line has one."""
    values: dict[str, Any] = {
        **_pair_values(account),
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


def _pair_values(account: NewAccount) -> dict[str, Any]:
    """The imported token pair, as columns."""
    return {
        "access_token_ciphertext": account.access_token_ciphertext,
        "refresh_token_ciphertext": account.refresh_token_ciphertext,
        "refresh_token_fingerprint": account.refresh_token_fingerprint,
        "tokens_issued_at": account.issued_at,
        "access_expires_at": account.access_expires_at,
        "refresh_expires_at": account.refresh_expires_at,
        "scope": account.scope,
    }


@dataclass(frozen=True)
class _StoredPair:
    """What an import compares a line with: the stored token's fingerprint, and when the
    stored pair was issued (its import or its last refresh)."""

    fingerprint: str | None
    issued_at: datetime | None
    id: int = 0
    needed_its_user: bool = False  # expired, revoked or failing: a new consent recovers it


def _recovers(status: str, consecutive_failures: int) -> bool:
    """Whether a new consent for an account in this state is a recovery (an account a
    person disabled stays disabled, and is not one)."""
    return status in (AccountStatus.EXPIRED, AccountStatus.REVOKED) or (
        status == AccountStatus.ACTIVE and consecutive_failures >= FAILING_AFTER
    )


MAX_LISTED_REFUSALS = 20


def _refusal_message(refusals: Sequence[str]) -> str:
    shown = list(refusals[:MAX_LISTED_REFUSALS])
    if len(refusals) > len(shown):
        shown.append(f"... and {len(refusals) - len(shown)} more")
    return (
        "nothing was imported: these lines would replace a newer token pair with an older one "
        "(use --force if that is really what you want):\n  " + "\n  ".join(shown)
    )


def _when(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
