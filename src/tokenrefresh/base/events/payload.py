"""What an event says: its JSON body, built once when it is recorded and sent verbatim.

`{"type": "account.expired", "timestamp": "2026-11-28T12:00:00Z", "data": {...}}`: no
token and no ciphertext, ever; `reason` and `message` texts pass the same scrubbing as
`last_error`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tokenrefresh.base.events.records import EventType
from tokenrefresh.base.scrub import safe_text, scrub

__all__ = ["account_data", "new_event_id", "payload"]

REASON_LIMIT = 500


def new_event_id() -> str:
    """`evt_` and 26 random characters: the webhook-id, unique per event."""
    return "evt_" + secrets.token_hex(13)


def payload(event_type: EventType, at: datetime, data: Mapping[str, Any]) -> str:
    body = {"type": event_type.value, "timestamp": _when(at), "data": dict(data)}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def account_data(
    account_id: int, open_id: str, label: str | None, reason: str | None = None, **extra: Any
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "account_id": account_id,
        "open_id": safe_text(open_id, 255),
        "label": safe_text(label, 255) if label is not None else None,
    }
    if reason is not None:
        data["reason"] = safe_text(scrub(reason), REASON_LIMIT)
    data.update(extra)
    return data


def _when(at: datetime) -> str:
    return at.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
