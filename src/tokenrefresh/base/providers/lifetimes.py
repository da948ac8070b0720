"""When a token expires, read one way for a refresh's answer (`adapters/oauth/answer.py`)
and for an imported line in the shape of that answer (`services/importer.py`), so that an
imported account and a refreshed one get the same rule.

A stated expiry is `seconds` from when the token was issued, or an absolute Unix
`timestamp` (the profile's `_unit`); a lifetime longer than the profile allows is cut to it
(refreshing sooner than needed is always safe). A refresh token whose answer states no
expiry (the RFC has none) lives the profile's `max_refresh` from when it was issued: a
refresh keeps the stored expiry, an import has none stored and counts it from `issued_at`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from tokenrefresh.base.providers.profile import ExpiryUnit, Lifetimes

__all__ = ["stated_expiry", "unstated_refresh_expiry"]


def stated_expiry(
    value: Decimal, unit: ExpiryUnit, ceiling: timedelta, issued_at: datetime
) -> tuple[datetime, bool] | None:
    """(issued_at plus the stated lifetime cut to `ceiling`, whether it was cut), for a
    positive `value`; None when a timestamp is not after `issued_at` (no lifetime left)."""
    seconds = value if unit == "seconds" else value - Decimal(issued_at.timestamp())
    if seconds <= 0:
        return None
    if seconds > Decimal(ceiling.total_seconds()):
        return issued_at + ceiling, True
    return issued_at + timedelta(seconds=float(seconds)), False


def unstated_refresh_expiry(lifetimes: Lifetimes, issued_at: datetime) -> datetime:
    """The expiry of a refresh token issued at `issued_at` whose answer stated none."""
    return issued_at + lifetimes.max_refresh
