"""SQLAlchemy models: only storage imports them. Times are aware UTC datetimes in Python, on
SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tokenrefresh.storage.records import AccountStatus
from tokenrefresh.storage.shape import read_moment

__all__ = [
    "Account",
    "Attempt",
    "Base",
    "KeyCheck",
    "Run",
    "SpentRefreshToken",
    "UTCDateTime",
]


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out; naive values are refused.

    SQLite has no time zones: values are stored there as naive UTC text, which sorts
    and compares correctly because every value is written in the same format.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware UTC datetime is required")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return read_moment(value)


# Integer on SQLite, so that the primary key is the rowid and autoincrements.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def _partial_index(name: str, columns: list[str], where: str) -> Index:
    """An index of only the rows that match `where`, on PostgreSQL and SQLite alike."""
    return Index(name, *columns, postgresql_where=text(where), sqlite_where=text(where))


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {datetime: UTCDateTime()}  # noqa: RUF012 - SQLAlchemy's own API


class Account(Base):
    """One connected TikTok account and its encrypted token pair."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # The app (a configuration's [apps.NAME]; `tiktok` without a file) the account belongs
    # to, and the user's id at its provider (TikTok's open_id), unique within the app.
    app: Mapped[str] = mapped_column(String(64), server_default=text("'tiktok'"))
    open_id: Mapped[str] = mapped_column(String(255))
    label: Mapped[str | None] = mapped_column(String(255))
    access_token_ciphertext: Mapped[str | None] = mapped_column(Text)
    refresh_token_ciphertext: Mapped[str | None] = mapped_column(Text)
    access_expires_at: Mapped[datetime]
    refresh_expires_at: Mapped[datetime]
    scope: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default=AccountStatus.ACTIVE.value)
    # Bumped whenever a new token pair is stored: a run that holds an older generation
    # knows that someone else refreshed (or re-imported) the account after it read it.
    token_generation: Mapped[int] = mapped_column(Integer, default=1)
    # SHA-256 (hex) of the stored refresh token while it is the one that was imported: a
    # re-import can tell the same pair without decrypting, and when a refresh replaces it,
    # the fingerprint moves to spent_refresh_tokens. NULL once the token came from TikTok
    # directly (it was never in an import file), and for rows stored before revision 0003.
    refresh_token_fingerprint: Mapped[str | None] = mapped_column(String(64))
    # When the stored pair was issued (import's issued_at, or the refresh that stored it):
    # an import of an older pair is refused.
    tokens_issued_at: Mapped[datetime | None]
    # A claim is a lease: whoever holds it (run or on-demand caller) is refreshing the
    # account; nobody else presents its refresh token until it ends or runs out.
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]
    # The refresh token expiry that `account.refresh_token_expiring` was recorded for:
    # warned once per expiry, however often the run looks (and however long events live).
    refresh_expiry_warned: Mapped[datetime | None]
    last_refreshed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("status IN ('active', 'expired', 'disabled', 'revoked')", name="status"),
        UniqueConstraint("app", "open_id"),
        # The refresh run walks this index in expiry order: only active accounts are in it.
        _partial_index("ix_accounts_due", ["access_expires_at", "id"], "status = 'active'"),
        Index("ix_accounts_status", "status"),
        # `status` counts the failing accounts: few, so a small partial index.
        _partial_index("ix_accounts_failing", ["id"], "consecutive_failures > 0"),
        Index("ix_accounts_refresh_expires_at", "refresh_expires_at"),
        # `status` counts the accounts without tokens (their users must reconnect).
        _partial_index("ix_accounts_without_tokens", ["id"], "refresh_token_ciphertext IS NULL"),
    )


class Run(Base):
    """One run of `refresh` or `cleanup`: who, when, and how it ended."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    command: Mapped[str] = mapped_column(String(32))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    shard: Mapped[str | None] = mapped_column(String(32))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(32))  # None while running
    exit_code: Mapped[int | None] = mapped_column(Integer)
    counts: Mapped[str] = mapped_column(Text, default="{}")  # JSON object of counters
    message: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_runs_command_started_at", "command", "started_at"),)


class Attempt(Base):
    """One call to TikTok's token endpoint for one account: what support tickets need."""

    __tablename__ = "refresh_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id", ondelete="CASCADE"))
    run_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("runs.id", ondelete="SET NULL"))
    attempted_at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(32))
    http_status: Mapped[int | None] = mapped_column(Integer)
    error_code: Mapped[str | None] = mapped_column(String(64))
    log_id: Mapped[str | None] = mapped_column(String(128))
    duration_ms: Mapped[int] = mapped_column(Integer)
    message: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_refresh_attempts_account_id_attempted_at", "account_id", "attempted_at"),
        Index("ix_refresh_attempts_attempted_at", "attempted_at"),
        Index("ix_refresh_attempts_run_id", "run_id"),
    )


class SpentRefreshToken(Base):
    """An imported refresh token that a refresh has since replaced: importing it again is
    refused (the same export run twice would put a spent token back).

    One row per import, not per refresh: tokens that came from TikTok directly were never
    in a file. Only a SHA-256 is kept; a long random token's hash reveals nothing.
    """

    __tablename__ = "spent_refresh_tokens"

    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id", ondelete="CASCADE"))
    spent_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_spent_refresh_tokens_account_id", "account_id"),
        Index("ix_spent_refresh_tokens_spent_at", "spent_at"),
    )


class KeyCheck(Base):
    """One known value encrypted with the keys: tells a wrong key set before anything is written.

    Encrypted when first needed, with the key that decrypts the stored tokens, and moved to
    the first key by `keys rotate` once every token is on it.
    """

    __tablename__ = "key_check"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1: one row
    ciphertext: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]


class OutboxEvent(Base):
    """An event waiting to be delivered (or delivered, until `cleanup` prunes it).

    Written in the same transaction as the change it describes, so no event is lost and
    none is invented. `event_id` is the webhook-id, the receiver's idempotency key;
    `dedupe_key`, where set, makes "once per account and expiry" (or streak) hold even when
    two runs notice the same thing. `account_id` is not a foreign key: an event outlives
    its account.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(40), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[int | None] = mapped_column(BigId)
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    delivered_at: Mapped[datetime | None]
    dropped_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        # Delivery walks the pending events, oldest due first: only those are indexed.
        _partial_index(
            "ix_outbox_pending",
            ["next_attempt_at", "id"],
            "delivered_at IS NULL AND dropped_at IS NULL",
        ),
        Index("ix_outbox_created_at", "created_at"),
    )
