"""What a provider's token answer means, read as its profile says: `interpret_answer` is pure,
an `Answer` (status, headers and body bytes) and a Profile in, a TokenGrant or one of three
exceptions out, whatever the bytes are.

Providers answer errors in the body, with statuses that are not always 4xx (TikTok's under
200, TikTok Shop's `code != 0` under 200), so the profile's error paths are read whatever
the status. But an answer that carries a new refresh token is a grant whatever else it
says: the old token may be spent. Everything a provider writes is untrusted: codes and
log_ids only if they look like one, descriptions scrubbed of every fragment of the call's
secrets, then bounded. This began as the TikTok client's interpreter; with the `tiktok`
profile it is that interpreter still, and the TikTok tests run through it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from tokenrefresh.adapters.oauth.reading import (
    NUMBER_TEXT_LIMIT,
    TOKEN_LIKE,
    Answer,
    TokenFields,
    identifier,
    json_number,
    non_empty_str,
    raise_if_busy,
    read_answer,
    retry_after,
)
from tokenrefresh.base.durations import format_duration
from tokenrefresh.base.outcomes import (
    AppCredentialsRejected,
    RefreshFailed,
    TokenGrant,
    UserTokenRejected,
)
from tokenrefresh.base.providers import Profile
from tokenrefresh.base.providers.lifetimes import stated_expiry
from tokenrefresh.base.providers.profile import ExpiryUnit
from tokenrefresh.base.scrub import MASK, safe_text, scrub

__all__ = [
    "ROTATED",
    "UNRECOGNISED_CODE",
    "enveloped",
    "error_of",
    "error_reason",
    "interpret_answer",
    "raise_error_field",
    "token_fields",
]

TEXT_INPUT_LIMIT = 2_000  # characters of a text from a provider looked at, at most
REASON_TEXT_LIMIT = 300  # characters of a text from a provider shown in a reason, at most
USER_ID_LIMIT = 255
SCOPE_LIMIT = 10_000
UNRECOGNISED_CODE = "an unrecognised error code"
ROTATED = "the token may have been rotated"  # what a refresh cut short after sending may have done

_CODE_SHAPES = {
    "text": re.compile(r"[a-z0-9][a-z0-9_.]{0,63}"),  # Reddit's 401 is a number among words
    "number": re.compile(r"-?[0-9]{1,12}"),
}
_UNSIGNED_NUMBER = re.compile(r"\+?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def token_fields(profile: Profile) -> TokenFields:
    """Where `profile`'s answers carry tokens: never shown in anything made from them."""
    answer = profile.answer
    return answer.envelope, (answer.access_token, answer.refresh_token)


# ----------------------------------------------------------------------------- the answer


def interpret_answer(
    answer: Answer,
    profile: Profile,
    secrets: tuple[str, ...],
    *,
    rejection_context: str | None = None,
) -> TokenGrant:
    """One answer of the token endpoint as a TokenGrant, or one of the three outcome exceptions.

    Pure, and total: whatever the bytes, nothing else is raised. `secrets` (the token
    presented, the client secret) never appear in a reason, nor does any token in the body.
    `rejection_context`: what a UserTokenRejected was about, put before its reason with ": "
    ("the authorization code was not accepted"); None (a refresh) leaves the reason as is.
    """
    fields, notes, secrets, details = read_answer(answer, secrets, token_fields(profile))
    status, headers, label = answer.status, answer.headers, profile.label
    data = _envelope(fields, profile)
    names = profile.answer
    if data is not None and non_empty_str(data.get(names.refresh_token)) is not None:
        # A new refresh token may mean the old one is spent: keeping it is the only safe choice.
        return _grant(data, fields, profile, answer, details, secrets, notes)
    if fields is not None:
        raise_error_field(fields, profile, answer, details, secrets, rejection_context)
    raise_if_busy(status, headers, details, label)
    if status != 200:
        raise RefreshFailed(f"unexpected HTTP {status} from {label}", **details)
    if fields is None:
        raise RefreshFailed(f"{label}'s answer is not a JSON object", **details)
    if data is None:
        raise RefreshFailed(f"{label}'s answer has no {names.envelope!r} object", **details)
    if non_empty_str(data.get(names.access_token)) is None:
        what = "neither an access token nor a refresh token" if names.refresh_token else "no token"
        raise RefreshFailed(f"{label}'s answer carries {what}", **details)
    return _grant(data, fields, profile, answer, details, secrets, notes)


def _envelope(fields: Mapping[str, Any] | None, profile: Profile) -> Mapping[str, Any] | None:
    """The object holding the token fields: the answer, or its envelope if it is an object."""
    return None if fields is None else enveloped(fields, profile.answer.envelope)


def enveloped(fields: Mapping[str, Any], envelope: str) -> Mapping[str, Any] | None:
    """The object under `envelope` ("": `fields` itself); a list of exactly one object is
    that object (Instagram's code answer); None if there is no such object."""
    if not envelope:
        return fields
    data = fields.get(envelope)
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    return data if isinstance(data, Mapping) else None


def raise_error_field(
    fields: Mapping[str, Any],
    profile: Profile,
    answer: Answer,
    details: dict[str, Any],
    secrets: tuple[str, ...],
    rejection_context: str | None,
) -> None:
    """Raise the outcome the answer's error code names, if it names one."""
    status, errors = answer.status, profile.errors
    code, description = error_of(fields, profile)
    if code is None:
        return
    shown_code, reason = error_reason(code, description, status, secrets, profile)
    details = {**details, "error_code": shown_code}
    if shown_code in errors.reconnect:
        if rejection_context is not None:
            reason = f"{rejection_context}: {reason}"
        raise UserTokenRejected(reason, **details)
    if shown_code in errors.app_rejected:
        raise AppCredentialsRejected(reason, **details)
    raise RefreshFailed(
        reason,
        retryable=shown_code in errors.transient or status == 429 or status >= 500,
        retry_after=retry_after(answer.headers),
        **details,
    )


def error_of(fields: Mapping[str, Any], profile: Profile) -> tuple[str | None, str | None]:
    """(code, description) at the first of the profile's error paths that holds a code of
    its kind; (None, None) for none, or for a success code (`code == 0`, `"ok"`)."""
    errors = profile.errors
    for code_path, description_path in zip(errors.code, errors.description, strict=True):
        code = _code(_at(fields, code_path), errors.code_kind)
        if code is None:
            continue
        if code in errors.success:
            return None, None
        description = non_empty_str(_at(fields, description_path))
        head, colon, tail = code.partition(":")
        if errors.code_kind == "text" and colon and _CODE_SHAPES["text"].fullmatch(head):
            # A code with its description run into it (Dropbox's "invalid_client: Invalid
            # client_id or client_secret") is that code.
            return head, description or non_empty_str(tail.strip())
        return code, description
    return None, None


def _at(fields: Mapping[str, Any], path: str) -> object:
    value: object = fields
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _code(value: object, kind: str) -> str | None:
    """A code of the kind the profile reads: non-empty text, or a whole number (as JSON
    sends it, or as its digits in a string: a failure is never taken for a success). A
    whole number where text is read is its digits (Reddit's `"error": 401`)."""
    if kind == "text":
        if isinstance(value, str):
            return non_empty_str(value)
        number = _code(value, "number")
        return number if number != "unrecognised" else None
    if isinstance(value, str) and _CODE_SHAPES["number"].fullmatch(value.strip()):
        return str(int(value))  # a number sent as text ("105002") is the same code
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        # A code too large to be one is still an error (never a success), just not shown.
        return str(int(value)) if abs(value) < 10**12 else "unrecognised"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def error_reason(
    code: str,
    description: str | None,
    status: int,
    secrets: tuple[str, ...],
    profile: Profile,
) -> tuple[str | None, str]:
    """The error code if it looks like one and shows no secret (else None), and the reason:
    "code (HTTP status): description", the description scrubbed and bounded."""
    shown_code = identifier(code, _CODE_SHAPES[profile.errors.code_kind], secrets)
    reason = f"{shown_code or UNRECOGNISED_CODE} (HTTP {status})"
    if description:
        reason += f": {_shown(description, secrets)}"
    return shown_code, reason


def _grant(
    data: Mapping[str, Any],
    fields: Mapping[str, Any] | None,
    profile: Profile,
    answer: Answer,
    details: Mapping[str, Any],
    secrets: tuple[str, ...],
    notes: tuple[str, ...],
) -> TokenGrant:
    """The grant in an answer that has at least one token; what was odd goes into notes."""
    names, lifetimes, sent_at = profile.answer, profile.lifetimes, answer.sent_at
    access_token = non_empty_str(data.get(names.access_token))
    refresh_token = non_empty_str(data.get(names.refresh_token)) if names.refresh_token else None
    odd = list(notes)
    if refresh_token is None:
        if profile.rotation.mode != "none":
            odd.append(f"no {names.refresh_token}: the stored one is kept")
    else:
        odd += _beside_a_new_token(fields or {}, profile, answer.status, secrets, access_token)
    access_expires_at = sent_at
    if access_token is None:
        odd.append(
            f"no usable {names.access_token}: the stored one is kept and refreshed by the next run"
        )
    else:
        access_expires_at = _expiry(
            data, names.access_expiry, names.access_expiry_unit, lifetimes.max_access, sent_at,
            odd, when_unusable="the access token is refreshed again by the next run",
        ) or sent_at  # fmt: skip
    refresh_expires_at = None
    if names.refresh_expiry:
        refresh_expires_at = _expiry(
            data, names.refresh_expiry, names.refresh_expiry_unit, lifetimes.max_refresh,
            sent_at, odd, when_unusable="the stored refresh expiry is kept",
        )  # fmt: skip
    elif lifetimes.refresh_renewed:
        # The provider states no expiry: the token just worked, so it lives on.
        refresh_expires_at = sent_at + lifetimes.max_refresh
    return TokenGrant(
        access_token=access_token,
        refresh_token=refresh_token,
        access_expires_at=access_expires_at,
        refresh_expires_at=refresh_expires_at,
        open_id=_secret_free(
            _field_text(data, names.user_id, USER_ID_LIMIT, odd, allow_empty=False),
            names.user_id,
            secrets,
            odd,
        ),
        scope=_secret_free(_scope(data, profile, odd), names.scope, secrets, odd),
        http_status=details["http_status"],
        log_id=details["log_id"],
        elapsed=details["elapsed"],
        notes=tuple(odd),
    )


def _expiry(
    data: Mapping[str, Any],
    name: str,
    unit: ExpiryUnit,
    ceiling: timedelta,
    sent_at: datetime,
    notes: list[str],
    *,
    when_unusable: str,
) -> datetime | None:
    """sent_at plus the field's lifetime (seconds, or an absolute timestamp less sent_at),
    clamped to `ceiling` (`stated_expiry`, which imports share); None if it is missing or
    unusable, with a note saying so."""
    value = _positive_seconds(data.get(name)) if name else None
    expiry = stated_expiry(value, unit, ceiling, sent_at) if value is not None else None
    if expiry is None:
        notes.append(f"{name or 'the expiry'} missing or unusable: {when_unusable}")
        return None
    expires_at, cut = expiry
    if cut:
        notes.append(f"{name} clamped to {_ceiling_text(ceiling)}")
    return expires_at


def _ceiling_text(ceiling: timedelta) -> str:
    """`1 day`, `366 days`: as the TikTok client has always written its clamps."""
    if ceiling.seconds == 0 and ceiling.microseconds == 0:
        return f"{ceiling.days} day{'s' if ceiling.days != 1 else ''}"
    return format_duration(ceiling)


def _beside_a_new_token(
    fields: Mapping[str, Any],
    profile: Profile,
    status: int,
    secrets: tuple[str, ...],
    access_token: str | None,
) -> list[str]:
    """Notes for a new refresh token that came with an error status or an error field."""
    what = "a new token pair" if access_token is not None else "a new refresh token"
    notes = []
    if status != 200:
        notes.append(f"HTTP {status} with {what}")
    code, _ = error_of(fields, profile)
    if code is not None:
        shape = _CODE_SHAPES[profile.errors.code_kind]
        shown = identifier(code, shape, secrets) or UNRECOGNISED_CODE
        notes.append(f"error {shown} beside {what}: kept")
    return notes


def _positive_seconds(value: object) -> Decimal | None:
    """A finite, positive number, from a JSON number or a numeric string."""
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


def _scope(data: Mapping[str, Any], profile: Profile, notes: list[str]) -> str | None:
    """The granted scopes as stored: text as sent, or a list (TikTok Shop) joined by commas."""
    name = profile.answer.scope
    value = data.get(name) if name else None
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        value = ",".join(value)
    return _field_text({name: value}, name, SCOPE_LIMIT, notes, allow_empty=True)


def _secret_free(
    text: str | None, name: str, secrets: tuple[str, ...], notes: list[str]
) -> str | None:
    """`text`, unless it holds a fragment of a secret or token (in any case, or encoded):
    such a field is stored and shown in plain text, so it is dropped, with a note."""
    if text is None or scrub(text, *secrets) == text:
        return text
    notes.append(f"{name} held a fragment of a token or secret: not kept")
    return None


def _field_text(
    data: Mapping[str, Any], name: str, limit: int, notes: list[str], *, allow_empty: bool
) -> str | None:
    """A text field made safe for the database (no control character, bounded)."""
    value = data.get(name) if name else None
    if value is None or (value == "" and not allow_empty):
        return None
    if not isinstance(value, str):
        notes.append(f"{name} is not a string: ignored")
        return None
    shown = safe_text(value, limit)
    if shown != value:
        notes.append(f"{name} had control characters escaped or was cut to {limit} characters")
    return shown


def _shown(text: str, secrets: tuple[str, ...]) -> str:
    """Text from a provider, safe to store and show: no fragment of a secret or token, no
    control character, at most REASON_TEXT_LIMIT characters."""
    scrubbed = scrub(text[:TEXT_INPUT_LIMIT], *secrets)
    return safe_text(TOKEN_LIKE.sub(MASK, scrubbed), REASON_TEXT_LIMIT)
