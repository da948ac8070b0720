"""The outbox: recording events inside other writes' transactions, and what delivery,
`events list`, `status`, the metrics and `cleanup` read and change of it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, func, insert, or_, select, update

from tokenrefresh.base import defaults
from tokenrefresh.base.events.payload import new_event_id, payload
from tokenrefresh.base.events.records import EventType, PendingEvent
from tokenrefresh.errors import TokenRefreshError
from tokenrefresh.storage.database import Database
from tokenrefresh.storage.models import Account, OutboxEvent
from tokenrefresh.storage.records import AccountStatus, Shard
from tokenrefresh.storage.sql import shard_conditions, stored_text

__all__ = [
    "EventView",
    "OutboxQueries",
    "OutboxStats",
    "record_account_event",
    "record_event",
    "record_expired",
    "record_failing",
    "record_recovered",
]

log = logging.getLogger(__name__)

_PENDING = (OutboxEvent.delivered_at.is_(None), OutboxEvent.dropped_at.is_(None))


@dataclass(frozen=True)
class EventView:
    """An outbox row as `events list` shows it."""

    id: int
    event_id: str
    type: str
    account_id: int | None
    created_at: datetime
    attempts: int
    next_attempt_at: datetime
    delivered_at: datetime | None
    dropped_at: datetime | None
    last_error: str | None
    payload: str

    @property
    def state(self) -> str:
        if self.delivered_at is not None:
            return "delivered"
        return "dropped" if self.dropped_at is not None else "pending"


@dataclass(frozen=True)
class OutboxStats:
    pending: int
    oldest_pending_at: datetime | None
    next_attempt_at: datetime | None = None  # the soonest next attempt of a pending event


def record_event(
    connection: Connection,
    event_type: EventType,
    data: Mapping[str, Any],
    now: datetime,
    *,
    account_id: int | None = None,
    dedupe_key: str | None = None,
) -> bool:
    """Add an event to the outbox, in the caller's transaction; False if its dedupe_key
    was recorded before (the event is then not recorded again)."""
    values = {
        "event_id": new_event_id(),
        "type": event_type.value,
        "account_id": account_id,
        "dedupe_key": dedupe_key,
        "payload": payload(event_type, now, data),
        "created_at": now,
        "next_attempt_at": now,
        "attempts": 0,
    }
    if dedupe_key is None:
        connection.execute(insert(OutboxEvent).values(values))
        return True
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        statement: Any = (
            postgresql_insert(OutboxEvent)
            .values(values)
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
        )
    else:
        statement = insert(OutboxEvent).values(values).prefix_with("OR IGNORE")
    return bool(connection.execute(statement).rowcount)


def record_account_event(
    connection: Connection,
    event_type: EventType,
    account_id: int,
    now: datetime,
    *,
    reason: str | None = None,
    dedupe_key: str | None = None,
    **extra: Any,
) -> bool:
    """An account event, its open_id, label and app read in the same transaction.

    An account of any app but `tiktok` also says its app and provider; the app `tiktok`
    keeps the event shape it always had (receivers compare its fields)."""
    from tokenrefresh.base.events.payload import account_data

    row = connection.execute(
        select(Account.open_id, Account.label, Account.app).where(Account.id == account_id)
    ).one_or_none()
    if row is None:
        return False
    if row.app != defaults.APP:
        extra = {"app": row.app, "provider": _provider_of(row.app), **extra}
    data = account_data(account_id, row.open_id, row.label, reason, **extra)
    return record_event(
        connection, event_type, data, now, account_id=account_id, dedupe_key=dedupe_key
    )


def _provider_of(app: str) -> str | None:
    """The app's provider as the configuration names it (None: it names no such app, or
    cannot be read: the event is recorded all the same)."""
    from tokenrefresh.base.apps import providers_by_app

    try:
        return providers_by_app().get(app)
    except TokenRefreshError:
        return None


def record_recovered(connection: Connection, account_id: int, now: datetime, how: str) -> None:
    record_account_event(
        connection, EventType.ACCOUNT_RECOVERED, account_id, now, reason=f"recovered by {how}"
    )


def record_expired(connection: Connection, account_id: int, now: datetime, reason: str) -> None:
    record_account_event(connection, EventType.ACCOUNT_EXPIRED, account_id, now, reason=reason)


def record_failing(
    connection: Connection, account_id: int, now: datetime, reason: str, failures: int
) -> None:
    """Once per streak: the dedupe key names the failure count that crossed the line and
    the pair it failed on (a recovery stores a new pair, so a new streak can warn again)."""
    generation = connection.execute(
        select(Account.token_generation).where(Account.id == account_id)
    ).scalar_one_or_none()
    record_account_event(
        connection,
        EventType.ACCOUNT_FAILING,
        account_id,
        now,
        reason=reason,
        dedupe_key=f"failing:{account_id}:{generation}",
        consecutive_failures=failures,
    )


class OutboxQueries(Database):
    """The outbox as delivery (events.records.OutboxStore) and the reports see it."""

    def record_expiring(
        self, now: datetime, warn_before: timedelta, shard: Shard | None, limit: int = 1000
    ) -> int:
        """`account.refresh_token_expiring` for active accounts whose refresh token runs
        out within `warn_before`: once per account and expiry (computed from
        `refresh_expires_in` at each refresh, an expiry moves by the calls' timing; it is
        the same one until the warned one has passed). How many were recorded now."""
        # Warned about an expiry that has passed (or never): this one is new. An expiry
        # still ahead was warned about already, even if a refresh moved it a little.
        warned = Account.refresh_expiry_warned
        not_warned_yet = or_(warned.is_(None), warned <= now)
        query = (
            select(Account.id, Account.refresh_expires_at)
            .where(
                Account.status == AccountStatus.ACTIVE.value,
                Account.refresh_expires_at > now,
                Account.refresh_expires_at <= now + warn_before,
                not_warned_yet,
                *shard_conditions(shard),
            )
            .order_by(Account.refresh_expires_at)
            .limit(limit)
        )

        def write(connection: Connection) -> int:
            recorded = 0
            for row in connection.execute(query).all():
                # Compare-and-set: of two runs that noticed it, one records the event.
                claimed = connection.execute(
                    update(Account)
                    .where(Account.id == row.id, not_warned_yet)
                    .values(refresh_expiry_warned=row.refresh_expires_at)
                ).rowcount
                if not claimed:
                    continue
                expires = row.refresh_expires_at.isoformat(timespec="seconds")
                recorded += record_account_event(
                    connection,
                    EventType.REFRESH_TOKEN_EXPIRING,
                    row.id,
                    now,
                    refresh_expires_at=expires.replace("+00:00", "Z"),
                )
            return recorded

        return self.transaction(write)

    def pending_events(self, now: datetime, limit: int) -> list[PendingEvent]:
        query = (
            select(
                OutboxEvent.id,
                OutboxEvent.event_id,
                OutboxEvent.type,
                OutboxEvent.payload,
                OutboxEvent.created_at,
                OutboxEvent.attempts,
            )
            .where(*_PENDING, OutboxEvent.next_attempt_at <= now)
            .order_by(OutboxEvent.next_attempt_at, OutboxEvent.id)
            .limit(limit)
        )
        return [PendingEvent(**row._mapping) for row in self.rows(query)]

    def mark_delivered(self, outbox_id: int, now: datetime) -> None:
        self.transaction(
            lambda c: c.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id == outbox_id)
                .values(delivered_at=now, attempts=OutboxEvent.attempts + 1, last_error=None)
            )
        )

    def mark_failed(self, outbox_id: int, error: str, next_attempt_at: datetime) -> None:
        self.transaction(
            lambda c: c.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id == outbox_id, *_PENDING)
                .values(
                    attempts=OutboxEvent.attempts + 1,
                    next_attempt_at=next_attempt_at,
                    last_error=stored_text(error, 500),
                )
            )
        )

    def drop_undelivered_before(self, cutoff: datetime, now: datetime) -> int:
        def write(connection: Connection) -> int:
            result = connection.execute(
                update(OutboxEvent)
                .where(*_PENDING, OutboxEvent.created_at < cutoff)
                .values(dropped_at=now)
            )
            return int(result.rowcount)

        return self.transaction(write)

    def list_events(
        self, *, pending_only: bool, event_type: str | None, limit: int
    ) -> list[EventView]:
        query = select(*(getattr(OutboxEvent, name) for name in _VIEW_COLUMNS))
        if pending_only:
            query = query.where(*_PENDING)
        if event_type is not None:
            query = query.where(OutboxEvent.type == event_type)
        query = query.order_by(OutboxEvent.id.desc()).limit(limit)
        return [EventView(**row._mapping) for row in self.rows(query)]

    def outbox_stats(self) -> OutboxStats:
        query = select(
            func.count().label("pending"),
            func.min(OutboxEvent.created_at).label("oldest"),
            func.min(OutboxEvent.next_attempt_at).label("next_attempt"),
        ).where(*_PENDING)
        row = self.row(query)
        assert row is not None
        return OutboxStats(
            pending=int(row.pending), oldest_pending_at=row.oldest, next_attempt_at=row.next_attempt
        )

    def make_pending_due(self, now: datetime) -> int:
        """Every pending event backing off is due at `now` (`events deliver --now`)."""

        def write(connection: Connection) -> int:
            result = connection.execute(
                update(OutboxEvent)
                .where(*_PENDING, OutboxEvent.next_attempt_at > now)
                .values(next_attempt_at=now)
            )
            return int(result.rowcount)

        return self.transaction(write)

    def count_events_before(self, cutoff: datetime) -> int:
        """Events recorded before `cutoff`: what `prune_events` would remove."""
        return int(self.scalar(select(func.count()).where(OutboxEvent.created_at < cutoff)))

    def prune_events(self, cutoff: datetime, now: datetime) -> int:
        """Remove the events recorded before `cutoff`, whatever their state; how many.

        Undelivered ones among them are given up with a warning: a receiver down for longer
        than the event retention does not make the outbox grow without end."""

        def write(connection: Connection) -> int:
            undelivered = connection.execute(
                select(func.count()).where(*_PENDING, OutboxEvent.created_at < cutoff)
            ).scalar_one()
            if undelivered:
                log.warning(
                    "%d event(s) were never delivered within the event retention; dropped",
                    undelivered,
                )
            result = connection.execute(delete(OutboxEvent).where(OutboxEvent.created_at < cutoff))
            return int(result.rowcount)

        return self.transaction(write)


_VIEW_COLUMNS = (
    "id",
    "event_id",
    "type",
    "account_id",
    "created_at",
    "attempts",
    "next_attempt_at",
    "delivered_at",
    "dropped_at",
    "last_error",
    "payload",
)
