"""How single values are shown: timestamps, relative times, and outside text made safe."""

from __future__ import annotations

from datetime import datetime, timedelta

from tokenrefresh.base.clock import iso
from tokenrefresh.base.durations import format_duration
from tokenrefresh.base.scrub import safe_text, scrub
from tokenrefresh.storage.records import AccountStatus, AccountView

__all__ = ["CELL_LIMIT", "TEXT_LIMIT", "expiries", "outside", "relative", "shown", "timestamp"]

CELL_LIMIT = 200  # characters of a table cell: enough to read, never a wall of text
TEXT_LIMIT = 2000  # characters of one outside text on a line of its own


def outside(text: str | None) -> str | None:
    """Outside text for a JSON document: scrubbed; escaping is the encoder's job."""
    return scrub(text) if text else text


def shown(text: str | None, limit: int | None = None) -> str:
    """Text as a terminal may show it: scrubbed, control characters escaped, bounded."""
    return safe_text(scrub(text), limit) if text else ""


def timestamp(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z: `2026-11-28T12:00:00Z`."""
    if value is None:
        return None
    return iso(value)


def expiries(account: AccountView) -> tuple[datetime | None, datetime | None]:
    """When the account's access and refresh tokens expire; none for an account whose
    tokens were erased or no longer work (revoked, expired): a date there would mislead."""
    if not account.has_tokens or account.status in (AccountStatus.EXPIRED, AccountStatus.REVOKED):
        return None, None
    return account.access_expires_at, account.refresh_expires_at


def relative(moment: datetime | None, now: datetime) -> str:
    """`in 1h30m`, `2d3h ago`, or `now (...)`: the two largest units are enough to read."""
    if moment is None:
        return "-"
    seconds = int((moment - now).total_seconds())
    if abs(seconds) < 1:
        return f"now ({timestamp(moment)})"
    text = _coarse(format_duration(timedelta(seconds=abs(seconds))))
    return f"in {text}" if seconds > 0 else f"{text} ago"


def _coarse(text: str) -> str:
    """`2d3h4m5s` -> `2d3h`."""
    parts: list[str] = []
    number = ""
    for char in text:
        number += char
        if char.isalpha():
            parts.append(number)
            number = ""
    return "".join(parts[:2])
