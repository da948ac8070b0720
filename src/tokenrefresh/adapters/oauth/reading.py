"""What every answer of a token endpoint is read into first, whatever it answers (a refresh,
a code exchange, a revoke): the body as a JSON object, the tokens it carries (never to be
shown), its log_id and Retry-After, and the details every outcome carries. Pure; what the
fields mean is for `answer.py` here and the TikTok package's code and revoke answers.
"""

from __future__ import annotations

import email.utils
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from tokenrefresh.adapters.outbound.body import header_value
from tokenrefresh.base.outcomes import RefreshFailed
from tokenrefresh.base.scrub import scrub

__all__ = [
    "MAX_RETRY_AFTER",
    "NUMBER_TEXT_LIMIT",
    "TOKEN_FIELDS",
    "TOKEN_LIKE",
    "Answer",
    "TokenFields",
    "identifier",
    "json_number",
    "json_object",
    "log_id",
    "non_empty_str",
    "raise_if_busy",
    "read_answer",
    "retry_after",
    "tokens_in",
]

MAX_RETRY_AFTER = 3600.0  # seconds: a longer Retry-After (or a date further off) is cut to this
NUMBER_TEXT_LIMIT = 100  # a longer "number" is not one
TOKEN_LIKE = re.compile(r"\b(?:act|rft|clt)\.[A-Za-z0-9._~!*+/=-]{4,}")
_LOG_ID_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SIGNED_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


# Where an answer's tokens are: its envelope ("" for none) and the tokens' field names.
TokenFields = tuple[str, tuple[str, ...]]
TOKEN_FIELDS: TokenFields = ("", ("access_token", "refresh_token"))


@dataclass(frozen=True)
class Answer:
    """What one call brought back, and when it was sent (expiries count from then)."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    sent_at: datetime
    elapsed: float


def read_answer(
    answer: Answer, secrets: tuple[str, ...], token_fields: TokenFields = TOKEN_FIELDS
) -> tuple[dict[str, Any] | None, tuple[str, ...], tuple[str, ...], dict[str, Any]]:
    """What every interpreter reads first: the body as a JSON object (None if it is not one)
    and its notes, the secrets with the answer's own tokens added (`token_fields`: where
    they are), and the details every outcome carries (the HTTP status, a log_id that looks
    like one, the time taken)."""
    fields, notes = json_object(answer.body)
    secrets = (*secrets, *tokens_in(fields, token_fields))
    details: dict[str, Any] = {
        "http_status": answer.status,
        "log_id": log_id(fields, answer.headers, secrets),
        "elapsed": answer.elapsed,
    }
    return fields, notes, secrets, details


def raise_if_busy(
    status: int, headers: Mapping[str, str], details: Mapping[str, Any], label: str = "TikTok"
) -> None:
    """A 429 or a 5xx is a retryable failure, with the provider's Retry-After if it gave one."""
    if status == 429 or status >= 500:
        raise RefreshFailed(
            f"HTTP {status} from {label}", retry_after=retry_after(headers), **details
        )


def log_id(
    fields: Mapping[str, Any] | None, headers: Mapping[str, str], secrets: tuple[str, ...]
) -> str | None:
    """The body's log_id (either shape), else the X-Tt-Logid header: only if it looks like one."""
    candidates: list[object] = []
    if fields is not None:
        error = fields.get("error")
        if isinstance(error, Mapping):
            candidates.append(error.get("log_id"))
        candidates.append(fields.get("log_id"))
    candidates.append(header_value(headers, "X-Tt-Logid"))
    for candidate in candidates:
        shown = identifier(candidate, _LOG_ID_SHAPE, secrets)
        if shown is not None:
            return shown
    return None


def identifier(value: object, shape: re.Pattern[str], secrets: tuple[str, ...]) -> str | None:
    """The value if it has the shape and holds no fragment of a secret or token, else None."""
    if not isinstance(value, str) or not shape.fullmatch(value):
        return None
    if TOKEN_LIKE.search(value) or scrub(value, *secrets) != value:
        return None
    return value


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Retry-After in seconds from now (delta-seconds or an HTTP date), within [0, 3600];
    None if absent or unreadable."""
    value = header_value(headers, "Retry-After")
    if value is None:
        return None
    text = value.strip()
    if len(text) > NUMBER_TEXT_LIMIT:
        return None
    if _SIGNED_NUMBER.fullmatch(text):
        seconds = float(json_number(text))  # inf for an absurd exponent: clamped below
    else:
        seconds_or_none = _seconds_until(text)
        if seconds_or_none is None:
            return None
        seconds = seconds_or_none
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _seconds_until(http_date: str) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(http_date)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return (when - datetime.now(UTC)).total_seconds()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def json_object(body: bytes) -> tuple[dict[str, Any] | None, tuple[str, ...]]:
    """The body as a JSON object (None if it is not one), and a note if bytes were replaced.

    Numbers come as Decimal, so no size of number can overflow. Invalid UTF-8 is replaced
    rather than refused: a stray byte in a description must not cost a new token pair."""
    try:
        return _as_object(_loads(body)), ()
    except UnicodeDecodeError:
        pass
    except (ValueError, RecursionError):
        return None, ()
    try:
        value = _loads(body.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return None, ()
    return _as_object(value), ("the answer is not valid UTF-8: invalid bytes were replaced",)


def _loads(document: bytes | str) -> object:
    return json.loads(document, parse_int=json_number, parse_float=json_number)


def json_number(text: str) -> Decimal:
    """A JSON number, exactly; an exponent too large even for Decimal gives ±Infinity or 0."""
    try:
        return Decimal(text)
    except InvalidOperation:
        return Decimal(float(text))  # float() saturates to inf or 0.0 instead of failing


def _as_object(value: object) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def tokens_in(
    fields: Mapping[str, Any] | None, token_fields: TokenFields = TOKEN_FIELDS
) -> tuple[str, ...]:
    """The tokens an answer carries, at the top and under its envelope (an object, or a
    list of them): never to be shown in anything made from it."""
    if fields is None:
        return ()
    envelope, names = token_fields
    places = [fields]
    inside = fields.get(envelope) if envelope else None
    for place in inside if isinstance(inside, list) else [inside]:
        if isinstance(place, Mapping):
            places.append(place)
    tokens = [place.get(name) for place in places for name in names if name]
    return tuple(token for token in tokens if isinstance(token, str) and token)


def non_empty_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
