"""Accounts whose refresh token ran out, and the dead tokens that `cleanup` erases."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, and_, func, or_, select, update

from tokenrefresh.storage.database import Database
from tokenrefresh.storage.models import Account
from tokenrefresh.storage.outbox import record_expired
from tokenrefresh.storage.records import AccountStatus, AccountView
from tokenrefresh.storage.sql import (
    ACCOUNT_VIEW_COLUMNS,
    account_view,
    dead_token_conditions,
    has_tokens,
    past_expiry_conditions,
)

__all__ = ["ExpiryQueries"]


class ExpiryQueries(Database):
    """Marking accounts past their refresh token's expiry, and erasing dead tokens."""

    def past_refresh_expiry(
        self, now: datetime, limit: int, apps: Collection[str] | None = None
    ) -> list[AccountView]:
        """Accounts not yet marked expired whose refresh token has run out (of `apps`
        only, if given: an app no longer configured is left as it is)."""
        query = (
            select(*ACCOUNT_VIEW_COLUMNS)
            .where(*past_expiry_conditions(now), *_of_apps(apps))
            .order_by(Account.id)
            .limit(limit)
        )
        return [account_view(row) for row in self.rows(query)]

    def expire_past_refresh_expiry(self, now: datetime, apps: Collection[str] | None = None) -> int:
        reason = "the refresh token passed its expiry; the user must reconnect"

        def write(connection: Connection) -> int:
            expired = connection.execute(
                update(Account)
                .where(*past_expiry_conditions(now), *_of_apps(apps))
                .values(status=AccountStatus.EXPIRED.value, last_error=reason, updated_at=now)
                .returning(Account.id)
            ).all()
            for row in expired:  # each announced, in the same transaction
                record_expired(connection, row.id, now, reason)
            return len(expired)

        return self.transaction(write)

    def count_tokens_to_erase(self, now: datetime, apps: Collection[str] | None = None) -> int:
        """How many accounts cleanup would erase the tokens of (expired, or about to be: of
        `apps`, the configured ones, as no other app's account is expired)."""
        query = (
            select(func.count())
            .select_from(Account)
            .where(
                or_(
                    Account.status == AccountStatus.EXPIRED.value,
                    and_(Account.refresh_expires_at <= now, *_of_apps(apps)),
                ),
                has_tokens(),
            )
        )
        return int(self.scalar(query))

    def erase_dead_tokens(self, now: datetime) -> int:
        """Erase the stored tokens of expired accounts: a dead secret is only a liability."""

        def write(connection: Connection) -> int:
            result = connection.execute(
                update(Account)
                .where(*dead_token_conditions())
                .values(access_token_ciphertext=None, refresh_token_ciphertext=None, updated_at=now)
            )
            return int(result.rowcount)

        return self.transaction(write)


def _of_apps(apps: Collection[str] | None) -> list[ColumnElement[bool]]:
    return [] if apps is None else [Account.app.in_(list(apps))]
