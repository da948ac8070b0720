"""Parsing `accounts import` input: JSON Lines, one account per line in the shape of its
app's provider's token answer (`import_lines.py` says which fields; TikTok's without a
configuration file).

All or nothing: every line is checked before anything is written, and the error names the
line and the field. Errors never repeat a value, since a value may be a token.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from tokenrefresh.base.providers import Profile, shipped_profile
from tokenrefresh.base.providers.lifetimes import stated_expiry, unstated_refresh_expiry
from tokenrefresh.errors import ImportFileError
from tokenrefresh.services.import_lines import (
    ISSUED_AT,
    LABEL,
    USER_ID,
    Expiry,
    LineShape,
    line_shape,
)
from tokenrefresh.storage.records import AccountLine

__all__ = ["KNOWN_FIELDS", "ImportedAccount", "parse_accounts"]

# The fields of a line for the `tiktok` profile (the import of every version before apps).
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
DEFAULT_PROFILE = "tiktok"  # the provider of the one app a configuration without a file has


@dataclass(frozen=True)
class ImportedAccount(AccountLine):
    """One valid line of the import: what it says of the account, and its tokens in clear.
    `open_id` is the user's id within the app, whatever the provider calls it."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)


class _LineError(Exception):
    pass


def parse_accounts(
    lines: Iterable[str], now: datetime, profile: Profile | None = None
) -> list[ImportedAccount]:
    """Every account in the input, in the shape of `profile`'s token answer (TikTok's by
    default), or ImportFileError listing what is wrong where."""
    shape = line_shape(profile or shipped_profile(DEFAULT_PROFILE))
    accounts: list[ImportedAccount] = []
    errors: list[str] = []
    first_line_of: dict[str, int] = {}
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            account = _parse_line(number, text, now, shape)
        except _LineError as error:
            errors.append(f"line {number}: {error}")
            continue
        if account.open_id in first_line_of:
            errors.append(
                f"line {number}: {shape.user_id} is the same as on line "
                f"{first_line_of[account.open_id]}"
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


def _parse_line(number: int, text: str, now: datetime, shape: LineShape) -> ImportedAccount:
    try:
        data = json.loads(text, object_pairs_hook=_refuse_duplicates)
    except json.JSONDecodeError as error:
        raise _LineError(f"not valid JSON ({error.msg} at column {error.colno})") from None
    except RecursionError:
        raise _LineError("not valid JSON (nested too deeply)") from None
    except ValueError:  # a whole number of more digits than Python converts (4300)
        raise _LineError("not valid JSON (a number with too many digits)") from None
    if not isinstance(data, dict):
        raise _LineError("not a JSON object")
    unknown = sorted(set(data) - shape.known)
    if unknown:
        names = ", ".join(repr(name[:40]) for name in unknown)
        raise _LineError(f"unknown field {names}")
    stated = _timestamp(data, ISSUED_AT) if ISSUED_AT in shape.own else None
    issued_at = stated or now
    if issued_at > now + CLOCK_SKEW:
        raise _LineError("field 'issued_at' is in the future")
    user_id = _user_id(data, shape.user_id)
    label = _optional_string(data, LABEL, max_length=255) if LABEL in shape.own else None
    access_token = _token(data, shape.access_token)
    # A provider that refreshes with the access token itself (Instagram) issues no refresh
    # token. Its refresh-token slot holds what a refresh presents, so the access token is
    # stored in both slots, with the same expiry (agreed with the refresh run, which
    # presents that slot; docs/providers.md, "Importing accounts").
    refresh_token = _token(data, shape.refresh_token) if shape.refresh_token else access_token
    access_expires_at = _expiry(data, shape.access_expiry, issued_at)
    if shape.refresh_expiry is None:
        refresh_expires_at = access_expires_at
    else:
        unstated = unstated_refresh_expiry(shape.lifetimes, issued_at)
        refresh_expires_at = _expiry(data, shape.refresh_expiry, issued_at, unstated)
    if stated is None and shape.issued_lifetime is not None:
        # A provider with a minimum age (Instagram: 24 h) needs to know how old a token is:
        # one imported without issued_at was issued its provider's lifetime before it expires.
        issued_at = min(access_expires_at - shape.issued_lifetime, now)
    return ImportedAccount(
        line=number,
        open_id=user_id,
        label=label,
        access_token=access_token,
        refresh_token=refresh_token,
        access_expires_at=access_expires_at,
        refresh_expires_at=refresh_expires_at,
        issued_at=issued_at,
        issued_at_stated=stated is not None,
        scope=_scope(data, shape.scope),
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


def _user_id(data: Mapping[str, Any], name: str) -> str:
    """The user's id: a string; under `user_id` a whole number too (as Meta sends it),
    kept as its decimal text."""
    value = data.get(name)
    if name == USER_ID and isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise _LineError(f"field {name!r} must be a non-empty string or a whole number")
        return _string({name: str(value)}, name, max_length=255)
    return _string(data, name, max_length=255)


def _scope(data: Mapping[str, Any], name: str) -> str:
    """The granted scopes: text as given, or a list of them (TikTok Shop) joined by commas,
    as a refresh stores them; "" when the line (or the answer) carries none."""
    value = data.get(name) if name else None
    if not isinstance(value, list):
        return (_optional_string(data, name, max_length=10_000) if name else None) or ""
    if not all(isinstance(item, str) and item.strip() for item in value):
        raise _LineError(f"field {name!r} must be a string or a list of non-empty strings")
    joined = ",".join(item.strip() for item in value)
    if len(joined) > 10_000:
        raise _LineError(f"field {name!r} is longer than 10000 characters")
    return joined


def _expiry(
    data: Mapping[str, Any],
    expiry: Expiry,
    issued_at: datetime,
    unstated: datetime | None = None,
) -> datetime:
    """When a token expires: the answer's field (seconds from issued_at or a Unix
    timestamp, cut to the profile's ceiling as a refresh cuts it), or its ISO 8601
    alternative as given, or `unstated` (the answer never states it)."""
    name, absolute_name = expiry.name, expiry.absolute
    has_stated = bool(name) and data.get(name) is not None
    absolute = _timestamp(data, absolute_name) if absolute_name else None
    if has_stated and absolute is not None:
        raise _LineError(f"give either {name!r} or {absolute_name!r}, not both")
    if absolute is not None:
        return absolute
    if not has_stated:
        if not name and unstated is not None:
            return unstated
        if name and absolute_name:
            raise _LineError(f"field {name!r} (or {absolute_name!r}) is missing")
        if name or absolute_name:
            raise _LineError(f"field {name or absolute_name!r} is missing")
        raise _LineError("a token's expiry is missing, and the provider's answer names none")
    value = data[name]
    if expiry.unit == "seconds":
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise _LineError(f"field {name!r} must be a positive whole number of seconds")
        if value > MAX_LIFETIME_SECONDS:
            raise _LineError(f"field {name!r} is more than 100 years")
    else:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise _LineError(f"field {name!r} must be a Unix timestamp in whole seconds")
        if not EARLIEST.timestamp() <= value <= LATEST.timestamp():
            raise _LineError(f"field {name!r} is not between the years 2000 and 2999")
    cut = stated_expiry(Decimal(value), expiry.unit, expiry.ceiling, issued_at)
    if cut is None:  # a timestamp not after issued_at: the token had expired by then
        return datetime.fromtimestamp(value, UTC)
    return cut[0]


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
