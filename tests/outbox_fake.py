"""An in-memory OutboxStore (the protocol of events/records.py) for the delivery tests."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from tokenrefresh.base.events.records import PendingEvent


@dataclass
class Row:
    event: PendingEvent
    next_attempt_at: datetime
    delivered_at: datetime | None = None
    dropped: bool = False
    errors: list[str] = field(default_factory=list)


class FakeOutbox:
    def __init__(self) -> None:
        self.rows: dict[int, Row] = {}

    def add(
        self,
        event_type: str,
        data: dict[str, Any],
        created_at: datetime,
        payload: str | None = None,
    ) -> PendingEvent:
        outbox_id = len(self.rows) + 1
        stamp = created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = payload or json.dumps(
            {"type": event_type, "timestamp": stamp, "data": data},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        event = PendingEvent(
            outbox_id, "evt_" + secrets.token_hex(13), event_type, body, created_at, 0
        )
        self.rows[outbox_id] = Row(event, created_at)
        return event

    def row(self, event: PendingEvent) -> Row:
        return self.rows[event.id]

    # The protocol.
    def pending_events(self, now: datetime, limit: int) -> list[PendingEvent]:
        due = [
            row.event
            for row in self.rows.values()
            if row.delivered_at is None and not row.dropped and row.next_attempt_at <= now
        ]
        return sorted(due, key=lambda event: (event.created_at, event.id))[:limit]

    def mark_delivered(self, outbox_id: int, now: datetime) -> None:
        self.rows[outbox_id].delivered_at = now

    def mark_failed(self, outbox_id: int, error: str, next_attempt_at: datetime) -> None:
        row = self.rows[outbox_id]
        row.event = replace(row.event, attempts=row.event.attempts + 1)
        row.errors.append(error)
        row.next_attempt_at = next_attempt_at

    def drop_undelivered_before(self, cutoff: datetime, now: datetime) -> int:
        count = 0
        for row in self.rows.values():
            if row.delivered_at is None and not row.dropped and row.event.created_at < cutoff:
                row.dropped = True
                count += 1
        return count
