"""What TikTok's answer means: `interpret_answer` is pure, an `Answer` (status, headers and body
bytes) in, a TokenGrant or one of three exceptions out, whatever the bytes are.

TikTok answers errors in the body, with statuses that are not documented and have been
seen to be 200, so the body's `error` is read whatever the status. But an answer that
carries a new refresh token is a grant whatever else it says: the old token may be spent.
Everything TikTok writes is untrusted: codes and log_ids only if they look like one,
descriptions scrubbed of every fragment of the call's secrets, then bounded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from tokenrefresh.adapters.outbound.body import header_value
from tokenrefresh.adapters.tiktok.reading import (
    MAX_RETRY_AFTER,
    NUMBER_TEXT_LIMIT,
    TOKEN_LIKE,
    Answer,
    identifier,
    json_number,
    log_id,
    non_empty_str,
    raise_if_busy,
    read_answer,
    retry_after,
)
from tokenrefresh.base.outcomes import (
    AppCredentialsRejected,
    RefreshFailed,
    TokenGrant,
    UserTokenRejected,
)
from tokenrefresh.base.scrub import MASK, safe_text, scrub

__all__ = [
    "APP_REJECTIONS",
    "MAX_ACCESS_LIFETIME",
    "MAX_REFRESH_LIFETIME",
    "MAX_RETRY_AFTER",
    "RETRYABLE_CODES",
    "ROTATED",
    "UNRECOGNISED_CODE",
    "error_reason",
    "header_value",
    "interpret_answer",
    "unread_answer",
]

# Longer lifetimes are cut to these: refreshing sooner than needed is always safe.
MAX_ACCESS_LIFETIME = timedelta(days=1)  # the longest TikTok ever documented
MAX_REFRESH_LIFETIME = timedelta(days=366)

TEXT_INPUT_LIMIT = 2_000  # characters of a text from TikTok looked at, at most
REASON_TEXT_LIMIT = 300  # characters of a text from TikTok shown in a reason, at most
OPEN_ID_LIMIT = 255
SCOPE_LIMIT = 10_000

# Error codes by what they say about the refresh token (from TikTok's "OAuth error handling").
USER_REJECTIONS = frozenset({"invalid_grant", "access_denied"})
APP_REJECTIONS = frozenset({"invalid_client", "unauthorized_client"})
RETRYABLE_CODES = frozenset(
    {"server_error", "temporarily_unavailable", "rate_limit_exceeded", "internal_error"}
)
UNRECOGNISED_CODE = "an unrecognised error code"
ROTATED = "the token may have been rotated"  # what a refresh cut short after sending may have done

_ERROR_CODE_SHAPE = re.compile(r"[a-z][a-z0-9_.]{0,63}")
_UNSIGNED_NUMBER = re.compile(r"\+?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


# ----------------------------------------------------------------------------- the answer


def interpret_answer(
    answer: Answer, secrets: tuple[str, ...], *, rejection_context: str | None = None
) -> TokenGrant:
    """One answer of the token endpoint as a TokenGrant, or one of the three outcome exceptions.

    Pure, and total: whatever the bytes, nothing else is raised. `secrets` (the refresh token
    presented, the client secret) never appear in a reason, nor does any token in the body.
    `rejection_context`: what a UserTokenRejected was about, put before its reason with ": "
    ("the authorization code was not accepted"); None (a refresh) leaves the reason as is.
    """
    fields, notes, secrets, details = read_answer(answer, secrets)
    status, headers, sent_at = answer.status, answer.headers, answer.sent_at
    if fields is not None and non_empty_str(fields.get("refresh_token")) is not None:
        # A new refresh token may mean the old one is spent: keeping it is the only safe choice.
        return _grant(fields, status, sent_at, details, secrets, notes)
    if fields is not None:
        _raise_error_field(fields, answer, details, secrets, rejection_context)
    raise_if_busy(status, headers, details)
    if status != 200:
        raise RefreshFailed(f"unexpected HTTP {status} from TikTok", **details)
    if fields is None:
        raise RefreshFailed("TikTok's answer is not a JSON object", **details)
    if non_empty_str(fields.get("access_token")) is None:
        raise RefreshFailed(
            "TikTok's answer carries neither an access token nor a refresh token", **details
        )
    return _grant(fields, status, sent_at, details, secrets, notes)


def _raise_error_field(
    fields: Mapping[str, Any],
    answer: Answer,
    details: dict[str, Any],
    secrets: tuple[str, ...],
    rejection_context: str | None,
) -> None:
    """Raise the outcome the body's `error` names, if it names one."""
    status = answer.status
    code, description = _error_of(fields)
    if code is None:
        return
    shown_code, reason = error_reason(code, description, status, secrets)
    details = {**details, "error_code": shown_code}
    if shown_code in USER_REJECTIONS:
        if rejection_context is not None:
            reason = f"{rejection_context}: {reason}"
        raise UserTokenRejected(reason, **details)
    if shown_code in APP_REJECTIONS:
        raise AppCredentialsRejected(reason, **details)
    raise RefreshFailed(
        reason,
        retryable=shown_code in RETRYABLE_CODES or status == 429 or status >= 500,
        retry_after=retry_after(answer.headers),
        **details,
    )


def error_reason(
    code: str, description: str | None, status: int, secrets: tuple[str, ...]
) -> tuple[str | None, str]:
    """The error code if it looks like one and shows no secret (else None), and the reason:
    "code (HTTP status): description", the description scrubbed and bounded."""
    shown_code = identifier(code, _ERROR_CODE_SHAPE, secrets)
    reason = f"{shown_code or UNRECOGNISED_CODE} (HTTP {status})"
    if description:
        reason += f": {_shown(description, secrets)}"
    return shown_code, reason


def _grant(
    fields: Mapping[str, Any],
    status: int,
    sent_at: datetime,
    details: Mapping[str, Any],
    secrets: tuple[str, ...],
    notes: tuple[str, ...],
) -> TokenGrant:
    """The grant in an answer that has at least one token; what was odd goes into notes."""
    access_token = non_empty_str(fields.get("access_token"))
    refresh_token = non_empty_str(fields.get("refresh_token"))
    odd = list(notes)
    if refresh_token is None:
        odd.append("no refresh_token: the stored one is kept")
    else:
        odd += _beside_a_new_token(fields, status, secrets, pair=access_token is not None)
    return TokenGrant(
        access_token=access_token,
        refresh_token=refresh_token,
        # Each field read below adds what was odd about it to `odd`, which `notes` takes last.
        access_expires_at=_access_expiry(fields, access_token, sent_at, odd),
        refresh_expires_at=_refresh_expiry(fields, sent_at, odd),
        open_id=_field_text(fields, "open_id", OPEN_ID_LIMIT, odd, allow_empty=False),
        scope=_field_text(fields, "scope", SCOPE_LIMIT, odd, allow_empty=True),
        http_status=details["http_status"],
        log_id=details["log_id"],
        elapsed=details["elapsed"],
        notes=tuple(odd),
    )


def _access_expiry(
    fields: Mapping[str, Any], access_token: str | None, sent_at: datetime, notes: list[str]
) -> datetime:
    """When the access token expires; sent_at (due at once) when no token or no usable
    lifetime came, so that the next run refreshes again."""
    if access_token is None:
        notes.append("no usable access_token: the stored one is kept and refreshed by the next run")
        return sent_at
    expires_at = _expiry(
        fields, "expires_in", MAX_ACCESS_LIFETIME, "1 day", sent_at, notes,
        when_unusable="the access token is refreshed again by the next run",
    )  # fmt: skip
    return expires_at or sent_at


def _refresh_expiry(
    fields: Mapping[str, Any], sent_at: datetime, notes: list[str]
) -> datetime | None:
    """When the refresh token expires; None (keep the stored expiry) without a usable lifetime."""
    return _expiry(
        fields, "refresh_expires_in", MAX_REFRESH_LIFETIME, "366 days", sent_at, notes,
        when_unusable="the stored refresh expiry is kept",
    )  # fmt: skip


def _expiry(
    fields: Mapping[str, Any],
    name: str,
    ceiling: timedelta,
    ceiling_text: str,
    sent_at: datetime,
    notes: list[str],
    *,
    when_unusable: str,
) -> datetime | None:
    """sent_at plus the field's lifetime, clamped to `ceiling`; None if it is unusable. What
    was odd about it goes into `notes`."""
    lifetime, note = _lifetime(name, fields, ceiling, ceiling_text)
    if lifetime is None:
        notes.append(f"{note}: {when_unusable}")
        return None
    notes += [note] if note else []
    return sent_at + lifetime


def _beside_a_new_token(
    fields: Mapping[str, Any], status: int, secrets: tuple[str, ...], *, pair: bool
) -> list[str]:
    """Notes for a new refresh token that came with an error status or an error field."""
    what = "a new token pair" if pair else "a new refresh token"
    notes = []
    if status != 200:
        notes.append(f"HTTP {status} with {what}")
    code, _ = _error_of(fields)
    if code is not None:
        shown = identifier(code, _ERROR_CODE_SHAPE, secrets) or UNRECOGNISED_CODE
        notes.append(f"error {shown} beside {what}: kept")
    return notes


def _lifetime(
    name: str, fields: Mapping[str, Any], cap: timedelta, cap_text: str
) -> tuple[timedelta | None, str]:
    """A lifetime field as a timedelta (None: missing or unusable), and a note ('' if none)."""
    seconds = _positive_seconds(fields.get(name))
    if seconds is None:
        return None, f"{name} missing or unusable"
    if seconds > Decimal(cap.total_seconds()):
        return cap, f"{name} clamped to {cap_text}"
    return timedelta(seconds=float(seconds)), ""


def _positive_seconds(value: object) -> Decimal | None:
    """A finite, positive number of seconds, from a JSON number or a numeric string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if len(text) > NUMBER_TEXT_LIMIT or not _UNSIGNED_NUMBER.fullmatch(text):
            return None
        value = json_number(text)
    if isinstance(value, int | float):  # not from the parser (Decimal), but from callers' dicts
        value = Decimal(value)
    if isinstance(value, Decimal) and value.is_finite() and value > 0:
        return value
    return None


def _field_text(
    fields: Mapping[str, Any], name: str, limit: int, notes: list[str], *, allow_empty: bool
) -> str | None:
    """A text field made safe for the database (no control character, bounded)."""
    value = fields.get(name)
    if value is None or (value == "" and not allow_empty):
        return None
    if not isinstance(value, str):
        notes.append(f"{name} is not a string: ignored")
        return None
    shown = safe_text(value, limit)
    if shown != value:
        notes.append(f"{name} had control characters escaped or was cut to {limit} characters")
    return shown


def _error_of(fields: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(code, description) of the OAuth or the data-API error shape; code None: no error."""
    error = fields.get("error")
    if isinstance(error, str) and error:
        return error, non_empty_str(fields.get("error_description"))
    if isinstance(error, Mapping):
        code = non_empty_str(error.get("code"))
        if code in (None, "ok"):
            return None, None
        return code, non_empty_str(error.get("message"))
    return None, None


def _shown(text: str, secrets: tuple[str, ...]) -> str:
    """Text from TikTok, safe to store and show: no fragment of a secret or token, no
    control character, at most REASON_TEXT_LIMIT characters."""
    scrubbed = scrub(text[:TEXT_INPUT_LIMIT], *secrets)
    return safe_text(TOKEN_LIKE.sub(MASK, scrubbed), REASON_TEXT_LIMIT)


def unread_answer(
    reason: str,
    status: int,
    headers: Mapping[str, str],
    elapsed: float,
    secrets: tuple[str, ...],
    *,
    if_processed: str = ROTATED,
) -> RefreshFailed:
    """An answer whose body was not read: if it was a 200, TikTok may have done the call
    (rotated the token, spent the code, revoked the token: `if_processed` says which)."""
    rotated = status == 200
    if rotated:
        reason += f" ({if_processed})"
    return RefreshFailed(
        reason,
        maybe_processed=rotated,
        http_status=status,
        log_id=log_id(None, headers, secrets),  # the header's, as no body was read
        elapsed=elapsed,
    )
