"""Parsing `accounts import` input: JSON Lines in the shape of TikTok's token response.

All or nothing: every line is checked before anything is written, and the error names the
line and the field. Errors never repeat a value, since a value may be a token.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tokenrefresh.errors import ImportFileError
from tokenrefresh.storage.records import AccountLine

__all__ = ["ImportedAccount", "parse_accounts"]

KNOWN_FIELDS = frozenset(
    {
        "open_id",
        "access_token",
        "refresh_token",
        "expires_in",
        "refresh_expires_in",
        "access_expires_at",
        "refresh_expires_at",
        "issued_at",
        "scope",
        "label",
        "token_type",  # part of TikTok's answer; ignored
    }
)
MAX_REPORTED_ERRORS = 20
CLOCK_SKEW = timedelta(minutes=5)
MAX_LIFETIME_SECONDS = 100 * 365 * 86_400
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2999, 12, 31, tzinfo=UTC)


@dataclass(frozen=True)
class ImportedAccount(AccountLine):
    """One valid line of the import: what it says of the account, and its tokens in clear."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)


class _LineError(Exception):
    pass


def parse_accounts(lines: Iterable[str], now: datetime) -> list[ImportedAccount]:
    """Every account in the input, or ImportFileError listing what is wrong where."""
    accounts: list[ImportedAccount] = []
    errors: list[str] = []
    first_line_of: dict[str, int] = {}
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            account = _parse_line(number, text, now)
        except _LineError as error:
            errors.append(f"line {number}: {error}")
            continue
        if account.open_id in first_line_of:
            errors.append(
                f"line {number}: open_id is the same as on line {first_line_of[account.open_id]}"
            )
            continue
        first_line_of[account.open_id] = number
        accounts.append(account)
    if errors:
        shown = errors[:MAX_REPORTED_ERRORS]
        if len(errors) > len(shown):
            shown.append(f"... and {len(errors) - len(shown)} more")
        raise ImportFileError(
            "nothing was imported; fix these lines and run the import again:\n  "
            + "\n  ".join(shown)
        )
    return accounts


def _parse_line(number: int, text: str, now: datetime) -> ImportedAccount:
    try:
        data = json.loads(text, object_pairs_hook=_refuse_duplicates)
    except json.JSONDecodeError as error:
        raise _LineError(f"not valid JSON ({error.msg} at column {error.colno})") from None
    except RecursionError:
        raise _LineError("not valid JSON (nested too deeply)") from None
    if not isinstance(data, dict):
        raise _LineError("not a JSON object")
    unknown = sorted(set(data) - KNOWN_FIELDS)
    if unknown:
        names = ", ".join(repr(name[:40]) for name in unknown)
        raise _LineError(f"unknown field {names}")
    stated = _timestamp(data, "issued_at")
    issued_at = stated or now
    if issued_at > now + CLOCK_SKEW:
        raise _LineError("field 'issued_at' is in the future")
    return ImportedAccount(
        line=number,
        open_id=_string(data, "open_id", max_length=255),
        label=_optional_string(data, "label", max_length=255),
        access_token=_token(data, "access_token"),
        refresh_token=_token(data, "refresh_token"),
        access_expires_at=_expiry(data, "expires_in", "access_expires_at", issued_at),
        refresh_expires_at=_expiry(data, "refresh_expires_in", "refresh_expires_at", issued_at),
        issued_at=issued_at,
        issued_at_stated=stated is not None,
        scope=_optional_string(data, "scope", max_length=10_000) or "",
    )


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose field appears twice: refused, since json.loads would silently keep
    the last (which of two open_ids was meant?)."""
    data: dict[str, Any] = {}
    for name, value in pairs:
        if name in data:
            raise _LineError(f"field {name[:40]!r} appears twice")
        data[name] = value
    return data


def _string(data: Mapping[str, Any], name: str, *, max_length: int) -> str:
    value = data.get(name)
    if value is None:
        raise _LineError(f"field {name!r} is missing")
    if not isinstance(value, str) or not value.strip():
        raise _LineError(f"field {name!r} must be a non-empty string")
    if len(value) > max_length:
        raise _LineError(f"field {name!r} is longer than {max_length} characters")
    return value.strip()


def _optional_string(data: Mapping[str, Any], name: str, *, max_length: int) -> str | None:
    if data.get(name) is None:
        return None
    return _string(data, name, max_length=max_length)


def _token(data: Mapping[str, Any], name: str) -> str:
    value = _string(data, name, max_length=4096)
    if any(char.isspace() for char in value):
        raise _LineError(f"field {name!r} contains white space")
    return value


def _expiry(
    data: Mapping[str, Any], seconds_name: str, absolute_name: str, issued_at: datetime
) -> datetime:
    has_seconds = data.get(seconds_name) is not None
    absolute = _timestamp(data, absolute_name)
    if has_seconds and absolute is not None:
        raise _LineError(f"give either {seconds_name!r} or {absolute_name!r}, not both")
    if absolute is not None:
        return absolute
    if not has_seconds:
        raise _LineError(f"field {seconds_name!r} (or {absolute_name!r}) is missing")
    seconds = data[seconds_name]
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds <= 0:
        raise _LineError(f"field {seconds_name!r} must be a positive whole number of seconds")
    if seconds > MAX_LIFETIME_SECONDS:
        raise _LineError(f"field {seconds_name!r} is more than 100 years")
    return issued_at + timedelta(seconds=seconds)


def _timestamp(data: Mapping[str, Any], name: str) -> datetime | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _LineError(f"field {name!r} must be an ISO 8601 timestamp string")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _LineError(
            f"field {name!r} is not an ISO 8601 timestamp (e.g. 2026-01-31T12:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        raise _LineError(f"field {name!r} needs a time zone (e.g. Z or +00:00)")
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        utc = datetime.max.replace(tzinfo=UTC)
    if not EARLIEST <= utc <= LATEST:
        raise _LineError(f"field {name!r} is not between the years 2000 and 2999")
    return utc
