"""The event types, the outbox rows as delivery sees them, and what delivery needs of the
store. Plain types: the delivery code and its fakes need neither SQLAlchemy nor requests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

__all__ = ["DeliveryReport", "EventType", "OutboxStore", "PendingEvent"]


class EventType(StrEnum):
    ACCOUNT_EXPIRED = "account.expired"  # the user must reconnect
    ACCOUNT_RECOVERED = "account.recovered"  # active and refreshed again
    REFRESH_TOKEN_EXPIRING = "account.refresh_token_expiring"  # noqa: S105 - within --warn-before
    ACCOUNT_FAILING = "account.failing"  # N transient failures in a row
    RUN_FAILED = "run.failed"  # a refresh or cleanup run ended with exit 1 or 3


@dataclass(frozen=True)
class PendingEvent:
    """One outbox row that is due for delivery.

    `event_id` is the webhook-id (the receiver's idempotency key), the same on every
    redelivery. `payload` is the exact JSON body, built when the event was recorded:
    `{"type": ..., "timestamp": "...Z", "data": {...}}`; it is signed and sent verbatim.
    """

    id: int
    event_id: str
    type: str
    payload: str
    created_at: datetime
    attempts: int


class OutboxStore(Protocol):
    """What delivery needs of the outbox (storage/outbox.py; a fake in unit tests)."""

    def pending_events(self, now: datetime, limit: int) -> list[PendingEvent]:
        """Undelivered, not dropped, next attempt due by `now`; oldest first."""
        ...

    def mark_delivered(self, outbox_id: int, now: datetime) -> None: ...

    def mark_failed(self, outbox_id: int, error: str, next_attempt_at: datetime) -> None:
        """Count a failed attempt (attempts + 1), keep the event pending until then."""
        ...

    def drop_undelivered_before(self, cutoff: datetime, now: datetime) -> int:
        """Give up on pending events recorded before `cutoff`; how many were dropped."""
        ...


@dataclass(frozen=True)
class DeliveryReport:
    delivered: int = 0
    failed: int = 0  # attempts that failed this time; those events stay pending
    dropped: int = 0  # pending longer than the retention: given up
    notified: int = 0  # events summarised in the human digest
    budget_exhausted: bool = False  # the time budget or the cap ended delivery early
