"""What `status` and the metrics file report, each figure from its own indexed query."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Select, and_, func, or_, select

from tokenrefresh.storage.database import Database
from tokenrefresh.storage.models import Account
from tokenrefresh.storage.records import AccountStatus, AccountView, Stats
from tokenrefresh.storage.sql import (
    ACCOUNT_VIEW_COLUMNS,
    IS_ACTIVE,
    IS_FAILING,
    account_view,
    past_expiry_conditions,
    without_tokens_conditions,
)

__all__ = ["StatsQueries"]


class StatsQueries(Database):
    """Counts and the accounts that need their user."""

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

            def scalar(query: Select[Any]) -> Any:
                return connection.execute(query).scalar_one()

            return Stats(
                by_status={
                    status.value: by_status.get(status.value, 0) for status in AccountStatus
                },
                expiring_within_window=expiring,
                overdue=overdue,
                past_refresh_expiry=scalar(
                    select(func.count()).where(*past_expiry_conditions(now))
                ),
                failing=scalar(
                    select(func.count()).where(IS_ACTIVE, IS_FAILING)  # ix_accounts_failing
                ),
                without_tokens=scalar(
                    select(func.count()).where(
                        *without_tokens_conditions(now)
                    )  # ix_accounts_without_tokens
                ),
                soonest_access_expiry=scalar(
                    select(func.min(Account.access_expires_at)).where(IS_ACTIVE)
                ),
                soonest_refresh_expiry=scalar(
                    select(func.min(Account.refresh_expires_at)).where(IS_ACTIVE)
                ),
            )

        return self.read(read)

    def reconnect_needed(self, now: datetime, limit: int) -> list[AccountView]:
        """Accounts whose user must reconnect: expired, past their refresh token's expiry, or
        without a stored refresh token."""
        query = (
            select(*ACCOUNT_VIEW_COLUMNS)
            .where(
                or_(
                    Account.status == AccountStatus.EXPIRED.value,
                    and_(*past_expiry_conditions(now)),
                    and_(*without_tokens_conditions(now)),
                )
            )
            .order_by(Account.id)
            .limit(limit)
        )
        return [account_view(row) for row in self.rows(query)]

    def accounts_by_app_status(self) -> dict[tuple[str, str], int]:
        """How many accounts each app holds in each status (those it holds any of)."""
        query = (
            select(Account.app, Account.status, func.count().label("accounts"))
            .group_by(Account.app, Account.status)
            .order_by(Account.app, Account.status)
        )
        return {(row.app, row.status): int(row.accounts) for row in self.rows(query)}
