"""Properties of `interpret_answer`, the pure half of the TikTok client, for any input.

For any status, headers and body (any JSON value, hostile strings, raw bytes), it returns a
TokenGrant or raises one of the three outcome exceptions, nothing else; an object carrying a
non-empty string refresh_token is always a grant with exactly that token; expiries lie in
[sent_at, sent_at + clamp]; and no note, reason, code or log_id holds a control character or
a FRAGMENT-long piece of a secret, however the endpoint disguises it.
"""

from __future__ import annotations

import email.utils
import json
import re
import string
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from tokenrefresh.adapters import tiktok
from tokenrefresh.adapters.tiktok import (
    MAX_ACCESS_LIFETIME,
    MAX_REFRESH_LIFETIME,
    MAX_RETRY_AFTER,
    Answer,
    interpret_answer,
)
from tokenrefresh.base import outcomes
from tokenrefresh.base.outcomes import (
    AppCredentialsRejected,
    RefreshFailed,
    TikTokError,
    TokenGrant,
    UserTokenRejected,
)
from tokenrefresh.base.scrub import FRAGMENT, MASK, safe_text

PRESENTED = "rft.Presented-Token_0123456789abcdef"
CLIENT_SECRET = "client-secret-9f8e7d6c5b4a"
SECRETS = (PRESENTED, CLIENT_SECRET)
FIELD_NAMES = [
    "access_token",
    "refresh_token",
    "expires_in",
    "refresh_expires_in",
    "open_id",
    "scope",
    "token_type",
    "error",
    "error_description",
    "log_id",
    "code",
    "message",
]
REASON_LIMIT = 300 + len("an unrecognised error code (HTTP 999): ")
URLSAFE = string.ascii_letters + string.digits + "-_"

# ----------------------------------------------------------------------------- strategies

HOSTILE_STRINGS = st.sampled_from(
    [
        "",
        "\ud800",
        "a\udfffb",
        "\x00",
        "\x1b[31mred",
        "\u202egnp.exe",
        "line\nbreak",
        "NaN",
        "Infinity",
        "1e999",
        " 7200 ",
        "7.2e3",
        "-5",
        "0",
        "7200",
        "9" * 400,
        "ok",
        "invalid_grant",
        "access_denied",
        "invalid_client",
        "server_error",
        "rate_limit_exceeded",
        "rft.looks-like-a-token",
        "act.another-one-here",
        PRESENTED,
        CLIENT_SECRET.upper(),
        "%41%42%43",
        "x" * 3000,
    ]
)
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)  # surrogates too
STRINGS = HOSTILE_STRINGS | ANY_TEXT
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**20, max_value=10**400)
    | st.floats()
    | STRINGS
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELD_NAMES) | ANY_TEXT, children, max_size=5)
    ),
    max_leaves=25,
)
ERROR_OBJECTS = st.fixed_dictionaries(
    {}, optional={"code": JSON_VALUES, "message": JSON_VALUES, "log_id": JSON_VALUES}
)
ANSWER_OBJECTS = st.fixed_dictionaries(
    {},
    optional={
        **dict.fromkeys(FIELD_NAMES, JSON_VALUES),
        "error": JSON_VALUES | ERROR_OBJECTS,
    },
)
STATUSES = st.sampled_from([200, 400, 401, 403, 429, 500, 502, 503]) | st.integers(0, 999)
SENT_AT = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
HTTP_DATES = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
).map(lambda when: email.utils.format_datetime(when, usegmt=True))
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40)
RETRY_AFTERS = HEADER_TEXT | HTTP_DATES | st.integers().map(str) | st.floats().map(str)
HEADERS = st.fixed_dictionaries(
    {},
    optional={"Retry-After": RETRY_AFTERS, "X-Tt-Logid": HEADER_TEXT, "content-type": HEADER_TEXT},
)


@st.composite
def json_bodies(draw: st.DrawFn, values: st.SearchStrategy[Any] = JSON_VALUES) -> bytes:
    """A value as JSON bytes: ASCII with \\uXXXX escapes, or UTF-8 with raw surrogates."""
    value = draw(values)
    if draw(st.booleans()):
        return json.dumps(value).encode()
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def interpret(
    status: int,
    headers: dict[str, str],
    body: bytes,
    sent_at: datetime,
    secrets: tuple[str, ...] = SECRETS,
) -> TokenGrant | TikTokError:
    """The grant, or the outcome exception; anything else propagates and fails the test."""
    try:
        return interpret_answer(Answer(status, headers, body, sent_at, 0.25), secrets)
    except (UserTokenRejected, AppCredentialsRejected, RefreshFailed) as error:
        return error


# ----------------------------------------------------------------------------- checks


def leaked_fragments(text: str, *secrets: str) -> list[str]:
    """FRAGMENT-long pieces of the secrets in the text, in any case, percent-decoded or not."""
    forms = {text.lower(), unquote(text).lower(), unquote(unquote(text)).lower()}
    return [
        piece
        for secret in secrets
        for piece in (
            secret[start : start + FRAGMENT].lower() for start in range(len(secret) - FRAGMENT + 1)
        )
        if any(piece in form for form in forms)
    ]


def assert_shown_safely(text: str | None, secrets: tuple[str, ...]) -> None:
    """No control character, no lone surrogate, no fragment of a secret."""
    if text is None:
        return
    assert safe_text(text) == text
    text.encode("utf-8")
    assert leaked_fragments(text, *secrets) == []


def assert_sound(
    outcome: TokenGrant | TikTokError, status: int, sent_at: datetime, secrets: tuple[str, ...]
) -> None:
    """What holds of every outcome, whatever the answer was."""
    assert outcome.http_status == status
    if outcome.log_id is not None:
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", outcome.log_id)
    assert_shown_safely(outcome.log_id, secrets)
    if isinstance(outcome, TokenGrant):
        assert_sound_grant(outcome, sent_at, secrets)
        return
    assert_shown_safely(outcome.reason, secrets)
    assert len(outcome.reason) <= REASON_LIMIT
    assert_shown_safely(outcome.error_code, secrets)
    if outcome.error_code is not None:
        assert re.fullmatch(r"[a-z0-9][a-z0-9_.]{0,63}", outcome.error_code)
    if isinstance(outcome, RefreshFailed) and outcome.retry_after is not None:
        assert 0.0 <= outcome.retry_after <= MAX_RETRY_AFTER


def assert_sound_grant(grant: TokenGrant, sent_at: datetime, secrets: tuple[str, ...]) -> None:
    assert grant.access_token is None or (
        isinstance(grant.access_token, str) and grant.access_token
    )
    assert grant.refresh_token is None or (
        isinstance(grant.refresh_token, str) and grant.refresh_token
    )
    assert grant.access_token is not None or grant.refresh_token is not None
    assert grant.access_expires_at.tzinfo is not None
    assert sent_at <= grant.access_expires_at <= sent_at + MAX_ACCESS_LIFETIME
    if grant.access_token is None:
        assert grant.access_expires_at == sent_at
    if grant.refresh_expires_at is not None:
        assert grant.refresh_expires_at.tzinfo is not None
        assert sent_at <= grant.refresh_expires_at <= sent_at + MAX_REFRESH_LIFETIME
    for note in grant.notes:
        assert_shown_safely(note, secrets)
        assert 0 < len(note) <= 200
    for text, limit in ((grant.open_id, 255), (grant.scope, 10_000)):
        if text is not None:
            assert safe_text(text) == text  # storable and showable as it is
            assert len(text) <= limit


# ----------------------------------------------------------------------------- properties


@settings(max_examples=400)
@given(
    body=json_bodies(JSON_VALUES | ANSWER_OBJECTS),
    status=STATUSES,
    headers=HEADERS,
    sent_at=SENT_AT,
)
@example(body=b"[" * 100_000 + b"]" * 100_000, status=200, headers={}, sent_at=datetime.now(UTC))
@example(
    body=b'{"expires_in": 1' + b"0" * 5000 + b"}", status=200, headers={}, sent_at=datetime.now(UTC)
)
@example(
    body=b'{"refresh_token": "r", "expires_in": 1e99999999999999999999}',
    status=200,
    headers={"Retry-After": "1e99999999999999999999"},
    sent_at=datetime.now(UTC),
)
def test_any_json_answer_is_a_grant_or_an_outcome(
    body: bytes, status: int, headers: dict[str, str], sent_at: datetime
) -> None:
    outcome = interpret(status, headers, body, sent_at)
    assert_sound(outcome, status, sent_at, SECRETS)


@settings(max_examples=300)
@given(
    fields=ANSWER_OBJECTS,
    refresh_token=st.text(st.characters(exclude_categories=()), min_size=1, max_size=60)
    | HOSTILE_STRINGS.filter(bool),
    ascii_json=st.booleans(),
    status=STATUSES,
    headers=HEADERS,
    sent_at=SENT_AT,
)
def test_a_new_refresh_token_is_always_a_grant_with_exactly_that_token(
    fields: dict[str, Any],
    refresh_token: str,
    ascii_json: bool,
    status: int,
    headers: dict[str, str],
    sent_at: datetime,
) -> None:
    fields = {**fields, "refresh_token": refresh_token}
    if ascii_json:
        body = json.dumps(fields).encode()
    else:  # raw UTF-8; a lone surrogate elsewhere makes the body invalid UTF-8
        assume(not any(0xD800 <= ord(char) <= 0xDFFF for char in refresh_token))
        body = json.dumps(fields, ensure_ascii=False).encode("utf-8", "surrogatepass")
    outcome = interpret(status, headers, body, sent_at)
    assert isinstance(outcome, TokenGrant)
    assert outcome.refresh_token == refresh_token
    assert_sound(outcome, status, sent_at, (CLIENT_SECRET,))
    if status != 200:
        assert any(note.startswith(f"HTTP {status} with a new") for note in outcome.notes)


@settings(max_examples=300)
@given(
    body=st.binary(max_size=300)
    | json_bodies(ANSWER_OBJECTS).flatmap(
        lambda valid: st.binary(max_size=8).map(lambda junk: valid[: len(valid) // 2] + junk)
    ),
    status=STATUSES,
    headers=HEADERS,
    sent_at=SENT_AT,
)
def test_any_bytes_are_a_grant_or_an_outcome(
    body: bytes, status: int, headers: dict[str, str], sent_at: datetime
) -> None:
    outcome = interpret(status, headers, body, sent_at)
    assert_sound(outcome, status, sent_at, SECRETS)


LIFETIMES = (
    st.integers(min_value=-10, max_value=10**6)
    | st.integers(min_value=10**6, max_value=10**400)
    | st.floats()
    | st.from_regex(r"\s?\+?[0-9]{1,30}(\.[0-9]{0,5})?([eE][+-]?[0-9]{1,4})?\s?", fullmatch=True)
    | SCALARS
)


@settings(max_examples=400)
@given(
    expires_in=LIFETIMES,
    refresh_expires_in=LIFETIMES,
    with_access_token=st.booleans(),
    status=STATUSES,
    sent_at=SENT_AT,
)
def test_lifetimes_of_any_size_land_within_the_clamps(
    expires_in: Any,
    refresh_expires_in: Any,
    with_access_token: bool,
    status: int,
    sent_at: datetime,
) -> None:
    fields = {
        "refresh_token": "rft.NewRefresh-0001",
        "expires_in": expires_in,
        "refresh_expires_in": refresh_expires_in,
    }
    if with_access_token:
        fields["access_token"] = "act.NewAccess-0001"
    grant = interpret(status, {}, json.dumps(fields).encode(), sent_at)
    assert isinstance(grant, TokenGrant)
    assert_sound(grant, status, sent_at, SECRETS)
    if with_access_token and type(expires_in) is int and 0 < expires_in <= 86400:
        assert grant.access_expires_at == sent_at + timedelta(seconds=expires_in)
    if type(refresh_expires_in) is int and refresh_expires_in > 366 * 86400:
        assert grant.refresh_expires_at == sent_at + MAX_REFRESH_LIFETIME


# ----------------------------------------------------------------------------- secrets


# The program's own words ("refresh_token", "unrecognised", "RefreshFailed"...): a "secret"
# made of them cannot be told apart from the messages, so random secrets avoid them.
OWN_WORDS = (
    " ".join(Path(module.__file__ or "").read_text() for module in (tiktok, outcomes)).lower()
    + MASK
)


def own_words_free(secret: str) -> bool:
    windows = (secret[start : start + FRAGMENT] for start in range(len(secret) - FRAGMENT + 1))
    return not any(window.lower() in OWN_WORDS for window in windows)


SECRET_TEXTS = st.text(URLSAFE, min_size=FRAGMENT, max_size=48).filter(own_words_free)
NOISE = st.text(st.characters(exclude_categories=()), max_size=20) | st.sampled_from(
    ["", " ", "%", "%25", "%2", "rft.", "act.", "\x1b[", "\n"]
)


@st.composite
def disguised_fragment(draw: st.DrawFn, secret: str) -> str:
    """A FRAGMENT-or-longer piece of the secret, in some letter case and percent-encoding."""
    length = draw(st.integers(FRAGMENT, len(secret)))
    start = draw(st.integers(0, len(secret) - length))
    piece = secret[start : start + length]
    piece = draw(
        st.sampled_from([piece, piece.upper(), piece.lower(), piece.swapcase(), piece.title()])
    )
    encoding = draw(st.sampled_from(["plain", "once", "twice", "some"]))
    if encoding == "once":
        return "".join(f"%{ord(char):02X}" for char in piece)
    if encoding == "twice":
        return "".join(f"%25{ord(char):02x}" for char in piece)
    if encoding == "some":
        flags = draw(st.lists(st.booleans(), min_size=len(piece), max_size=len(piece)))
        return "".join(
            f"%{ord(char):02X}" if flag else char for char, flag in zip(piece, flags, strict=True)
        )
    return piece


@st.composite
def texts_with_secrets(draw: st.DrawFn, secrets: tuple[str, ...]) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        parts.append(draw(NOISE))
        parts.append(draw(disguised_fragment(draw(st.sampled_from(secrets)))))
    parts.append(draw(NOISE))
    return "".join(parts)


@settings(max_examples=400)
@given(data=st.data(), status=STATUSES, sent_at=SENT_AT)
def test_no_fragment_of_a_secret_is_shown_however_disguised(
    data: st.DataObject, status: int, sent_at: datetime
) -> None:
    presented, client_secret, answered = data.draw(
        st.tuples(SECRET_TEXTS, SECRET_TEXTS, SECRET_TEXTS), label="secrets"
    )
    secrets = (presented, client_secret, answered)
    echo = texts_with_secrets(secrets)
    code = data.draw(
        st.sampled_from(["invalid_grant", "invalid_client", "server_error", "bogus"])
        | echo
        | disguised_fragment(presented).map(str.lower),
        label="code",
    )
    shape = data.draw(st.sampled_from(["oauth", "data-api", "grant"]), label="shape")
    body: dict[str, Any]
    if shape == "oauth":
        body = {"error": code, "error_description": data.draw(echo), "log_id": data.draw(echo)}
    elif shape == "data-api":
        body = {"error": {"code": code, "message": data.draw(echo), "log_id": data.draw(echo)}}
    else:
        body = {"refresh_token": data.draw(echo), "error": code, "scope": data.draw(echo)}
    if data.draw(st.booleans(), label="answer carries a token"):
        body["access_token"] = answered
    headers = {"X-Tt-Logid": data.draw(echo), "Retry-After": data.draw(echo)}
    encoded = json.dumps(body, ensure_ascii=data.draw(st.booleans())).encode(
        "utf-8", "surrogatepass"
    )

    outcome = interpret(status, headers, encoded, sent_at, secrets=(presented, client_secret))
    shown_secrets = (presented, client_secret, answered) if "access_token" in body else secrets[:2]
    assert_sound(outcome, status, sent_at, shown_secrets)
    if isinstance(outcome, TikTokError):
        assert leaked_fragments(" ".join([str(outcome), repr(outcome)]), *shown_secrets) == []


@pytest.mark.parametrize("disguise", [str.upper, str.lower])
def test_a_secret_in_a_description_is_masked_not_dropped(disguise: Any) -> None:
    """The shape of the reason around a mask is kept (a plain check beside the properties)."""
    body = json.dumps(
        {"error": "invalid_grant", "error_description": f"bad {disguise(CLIENT_SECRET)}!"}
    ).encode()
    outcome = interpret(400, {}, body, datetime.now(UTC))
    assert isinstance(outcome, UserTokenRejected)
    assert outcome.reason == "invalid_grant (HTTP 400): bad [redacted]!"


def test_expiry_clamps_are_the_documented_ones() -> None:
    assert timedelta(days=1) == MAX_ACCESS_LIFETIME
    assert timedelta(days=366) == MAX_REFRESH_LIFETIME
    assert MAX_RETRY_AFTER == 3600.0
