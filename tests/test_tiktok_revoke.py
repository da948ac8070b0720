"""TikTokClient.revoke against the loopback stand-in, and the pure interpretations of revoke
and code-exchange answers for any bytes.

A revoke returns only when TikTok said it revoked; "already invalid" is a UserTokenRejected;
everything unclear is a retryable RefreshFailed, because believing a revoke worked when it
did not is the costly mistake. No exception ever shows a fragment of a secret.
"""

from __future__ import annotations

import json
import re
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers_tiktok import (
    WRONG_SECRET,
    assert_hides,
    leaked_fragments,
    make_client,
    percent_encoded,
    the_one_form_sent,
)
from standin import REVOKE_PATH, IssuedTokens, Reply, TikTokStandIn
from tokenrefresh.adapters.tiktok import (
    Answer,
    TikTokClient,
    interpret_code_answer,
    interpret_revoke_answer,
)
from tokenrefresh.adapters.tiktok.revoke_answer import INVALID_TOKEN_CODES
from tokenrefresh.base.outcomes import (
    AppCredentialsRejected,
    RefreshFailed,
    TikTokError,
    TokenGrant,
    UserTokenRejected,
)
from tokenrefresh.base.scrub import FRAGMENT, safe_text

SLOWER_THAN_TIMEOUT = 1.0
ALREADY = "the access token is already invalid: "


@pytest.fixture
def client(standin: TikTokStandIn) -> Iterator[TikTokClient]:
    with closing(make_client(standin, standin.client_secret)) as client:
        yield client


@pytest.fixture
def issued(standin: TikTokStandIn) -> IssuedTokens:
    return standin.issue("alice")


def revoke_error(client: TikTokClient, standin: TikTokStandIn, access_token: str) -> TikTokError:
    with pytest.raises(TikTokError) as caught:
        client.revoke(access_token)
    error = caught.value
    secrets = [access_token, standin.client_secret, WRONG_SECRET, *standin.issued_tokens]
    assert_hides(error, *secrets)
    return error


# ----------------------------------------------------------------------------- the endpoint


def test_revoke_sends_the_token_and_ends_every_token_of_the_user(
    standin: TikTokStandIn, client: TikTokClient, issued: IssuedTokens
) -> None:
    second = standin.issue("alice")
    other = standin.issue("bob")
    assert client.revoke(issued.access_token) is None

    the_one_form_sent(standin, REVOKE_PATH, token=issued.access_token)
    assert standin.revoke_count("alice") == 1
    for tokens in (issued, second):
        assert standin.access_revoked(tokens.access_token)
        error = refresh_error(client, tokens.refresh_token)
        assert type(error) is UserTokenRejected
        assert error.reason == "invalid_grant (HTTP 400): Refresh token is invalid or expired."
    assert client.refresh(other.refresh_token).open_id == "bob"


def refresh_error(client: TikTokClient, refresh_token: str) -> TikTokError:
    with pytest.raises(TikTokError) as caught:
        client.refresh(refresh_token)
    return caught.value


@pytest.mark.parametrize("status", [400, 401, 200])
def test_revoking_twice_is_already_invalid(
    standin: TikTokStandIn, client: TikTokClient, issued: IssuedTokens, status: int
) -> None:
    standin.revoke_invalid_status = status
    client.revoke(issued.access_token)
    error = revoke_error(client, standin, issued.access_token)
    assert type(error) is UserTokenRejected
    assert error.error_code == "invalid_grant"
    assert error.http_status == status
    assert error.reason == (
        f"{ALREADY}invalid_grant (HTTP {status}): Access token is invalid or has been revoked."
    )
    assert error.log_id is not None
    assert standin.revoke_count() == 1
    assert len(standin.received) == 2


def test_a_wrong_client_secret_rejects_the_app_and_revokes_nothing(
    standin: TikTokStandIn, issued: IssuedTokens
) -> None:
    client = make_client(standin, WRONG_SECRET)
    try:
        error = revoke_error(client, standin, issued.access_token)
    finally:
        client.close()
    assert type(error) is AppCredentialsRejected
    assert error.reason == "invalid_client (HTTP 401): Client key or secret is invalid."
    assert not standin.access_revoked(issued.access_token)
    assert standin.is_valid(issued.refresh_token)


def test_a_timeout_after_the_revoke_says_it_may_have_been_revoked(
    standin: TikTokStandIn, client: TikTokClient, issued: IssuedTokens
) -> None:
    standin.script(Reply(delay=SLOWER_THAN_TIMEOUT, consume=True), open_id="alice")
    error = revoke_error(client, standin, issued.access_token)
    assert type(error) is RefreshFailed
    assert error.retryable is True
    assert error.maybe_processed is True
    assert error.reason == (
        "no complete answer from TikTok within 0.3 s (the token may have been revoked)"
    )
    assert standin.access_revoked(issued.access_token)  # it was, and nobody heard
    # Asking again tells: the token is already invalid.
    again = revoke_error(client, standin, issued.access_token)
    assert type(again) is UserTokenRejected


def test_an_empty_token_is_refused_before_sending(
    standin: TikTokStandIn, client: TikTokClient
) -> None:
    with pytest.raises(ValueError, match="access token is required"):
        client.revoke("")
    assert standin.received == []


def test_echoed_fragments_of_the_token_and_secret_are_masked(
    standin: TikTokStandIn, client: TikTokClient, issued: IssuedTokens
) -> None:
    token, secret = issued.access_token, standin.client_secret
    echo = (
        f"token {token[4:24].upper()} / {percent_encoded(token[10:40])} / "
        f"{quote(quote(token))} / secret {secret[2:16].upper()} / {percent_encoded(secret)} / end"
    )
    standin.script(
        Reply(401, {"error": {"code": "access_token_invalid", "message": echo, "log_id": "L7"}}),
        open_id="alice",
    )
    error = revoke_error(client, standin, token)
    assert type(error) is UserTokenRejected
    assert error.log_id == "L7"
    assert error.reason == (
        f"{ALREADY}access_token_invalid (HTTP 401): token [redacted] / [redacted] / "
        "[redacted] / secret [redacted] / [redacted] / end"
    )


def test_tokens_of_the_answer_itself_are_masked(
    standin: TikTokStandIn, client: TikTokClient, issued: IssuedTokens
) -> None:
    """An answer that carries a token (of any shape) and repeats it in its description."""
    opaque = "OpaqueAccessValue0123456789"
    standin.script(
        Reply(
            500,
            {"error": "server_error", "error_description": f"for {opaque}", "access_token": opaque},
        )
    )
    error = revoke_error(client, standin, issued.access_token)
    assert leaked_fragments(error.reason, opaque) == []
    assert error.reason == "server_error (HTTP 500): for [redacted]"


# ----------------------------------------------------------------------------- answers


def oauth(code: str, description: str = "") -> dict[str, Any]:
    return {"error": code, "error_description": description or code, "log_id": "LOG1"}


def data_api(code: str, message: str = "") -> dict[str, Any]:
    return {"data": {}, "error": {"code": code, "message": message, "log_id": "LOG2"}}


# (reply, outcome type or None for revoked, retryable, reason)
ANSWERS: list[Any] = [
    pytest.param(Reply(200), None, None, None, id="200-empty"),
    pytest.param(Reply(204), None, None, None, id="204"),
    pytest.param(Reply(200, {}), None, None, None, id="200-empty-object"),
    pytest.param(Reply(200, data_api("ok")), None, None, None, id="200-data-api-ok"),
    pytest.param(Reply(200, {"error": "", "log_id": "x"}), None, None, None, id="200-error-empty"),
    pytest.param(
        Reply(400, oauth("invalid_grant", "gone")),
        UserTokenRejected,
        None,
        f"{ALREADY}invalid_grant (HTTP 400): gone",
        id="invalid_grant",
    ),
    pytest.param(
        Reply(200, oauth("invalid_grant", "gone")),
        UserTokenRejected,
        None,
        f"{ALREADY}invalid_grant (HTTP 200): gone",
        id="invalid_grant-200",
    ),
    pytest.param(
        Reply(400, {"error": "invalid_token"}),
        UserTokenRejected,
        None,
        f"{ALREADY}invalid_token (HTTP 400)",
        id="invalid_token",
    ),
    pytest.param(
        Reply(401, data_api("access_token_invalid", "not found")),
        UserTokenRejected,
        None,
        f"{ALREADY}access_token_invalid (HTTP 401): not found",
        id="access_token_invalid",
    ),
    # A 401 without one of TikTok's documented codes is what a gateway may answer: no verdict.
    pytest.param(
        Reply(401), RefreshFailed, True, "unexpected HTTP 401 from TikTok", id="401-empty"
    ),
    pytest.param(
        Reply(401, "<html>no</html>"),
        RefreshFailed,
        True,
        "unexpected HTTP 401 from TikTok",
        id="401-html",
    ),
    pytest.param(
        Reply(401, oauth("brand_new_code", "hm")),
        RefreshFailed,
        True,
        "brand_new_code (HTTP 401): hm",
        id="401-unknown-code",
    ),
    pytest.param(
        Reply(401, oauth("invalid_client", "bad app")),
        AppCredentialsRejected,
        None,
        "invalid_client (HTTP 401): bad app",
        id="invalid_client",
    ),
    pytest.param(
        Reply(400, oauth("unauthorized_client", "no")),
        AppCredentialsRejected,
        None,
        "unauthorized_client (HTTP 400): no",
        id="unauthorized_client",
    ),
    pytest.param(
        Reply(429, headers={"Retry-After": "5"}),
        RefreshFailed,
        True,
        "HTTP 429 from TikTok",
        id="429",
    ),
    pytest.param(
        Reply(429, data_api("rate_limit_exceeded", "slow")),
        RefreshFailed,
        True,
        "rate_limit_exceeded (HTTP 429): slow",
        id="429-data-api",
    ),
    pytest.param(
        Reply(503, "<html>down</html>"), RefreshFailed, True, "HTTP 503 from TikTok", id="503"
    ),
    pytest.param(
        Reply(500, oauth("invalid_request", "x")),
        RefreshFailed,
        True,
        "invalid_request (HTTP 500): x",
        id="500-request-error",
    ),
    pytest.param(
        Reply(200, oauth("server_error", "busy")),
        RefreshFailed,
        True,
        "server_error (HTTP 200): busy",
        id="200-server_error",
    ),
    pytest.param(
        Reply(200, "<html>ok!</html>"),
        RefreshFailed,
        True,
        "TikTok's answer to the revoke is neither empty nor a JSON object",
        id="200-html",
    ),
    pytest.param(
        Reply(200, "[]"),
        RefreshFailed,
        True,
        "TikTok's answer to the revoke is neither empty nor a JSON object",
        id="200-array",
    ),
    pytest.param(
        Reply(200, {"error": 5}),
        RefreshFailed,
        True,
        "an unrecognised error code (HTTP 200)",
        id="200-error-number",
    ),
    pytest.param(
        Reply(200, {"error": {"code": "", "message": "what"}}),
        RefreshFailed,
        True,
        "an unrecognised error code (HTTP 200): what",
        id="200-error-without-code",
    ),
    pytest.param(
        Reply(400, oauth("something_new", "?")),
        RefreshFailed,
        True,
        "something_new (HTTP 400): ?",
        id="400-unknown-code",
    ),
    pytest.param(
        Reply(400, oauth("invalid_request", "Missing token.")),
        RefreshFailed,
        False,
        "invalid_request (HTTP 400): Missing token.",
        id="invalid_request",
    ),
    pytest.param(
        Reply(403, oauth("access_denied", "no")),
        RefreshFailed,
        False,
        "access_denied (HTTP 403): no",
        id="access_denied",
    ),
    pytest.param(
        Reply(302, headers={"Location": "/elsewhere"}),
        RefreshFailed,
        True,
        "unexpected HTTP 302 from TikTok",
        id="302",
    ),
    pytest.param(Reply(403), RefreshFailed, True, "unexpected HTTP 403 from TikTok", id="403"),
]


@pytest.mark.parametrize(("reply", "outcome", "retryable", "reason"), ANSWERS)
def test_each_answer_has_one_outcome(
    standin: TikTokStandIn,
    client: TikTokClient,
    issued: IssuedTokens,
    reply: Reply,
    outcome: type[TikTokError] | None,
    retryable: bool | None,
    reason: str | None,
) -> None:
    standin.script(reply, open_id="alice")
    if outcome is None:
        assert client.revoke(issued.access_token) is None
        return
    error = revoke_error(client, standin, issued.access_token)
    assert type(error) is outcome
    assert error.reason == reason
    assert error.http_status == reply.status
    if isinstance(error, RefreshFailed):
        assert error.retryable is retryable
        assert error.maybe_processed is False
    assert len(standin.received) == 1  # never retried by the client


def test_retry_after_and_log_id_are_kept(
    standin: TikTokStandIn, client: TikTokClient, issued: IssuedTokens
) -> None:
    standin.script(Reply(429, headers={"Retry-After": "5", "X-Tt-Logid": "HDR-LOG"}))
    error = revoke_error(client, standin, issued.access_token)
    assert isinstance(error, RefreshFailed)
    assert error.retry_after == 5.0
    assert error.log_id == "HDR-LOG"


# ----------------------------------------------------------------------------- bounds


def test_a_trickled_answer_ends_near_the_deadline(
    standin: TikTokStandIn, issued: IssuedTokens
) -> None:
    standin.script(Reply(200, b'{"data": {}, "pad": "' + b"x" * 60 + b'"}', trickle=0.2))
    client = make_client(standin, standin.client_secret, timeout=1.0)
    try:
        started = time.monotonic()
        error = revoke_error(client, standin, issued.access_token)
        took = time.monotonic() - started
    finally:
        client.close()
    assert type(error) is RefreshFailed
    assert error.retryable is True
    assert error.reason == (
        "no complete answer from TikTok within 1 s (the token may have been revoked)"
    )
    assert 1.0 <= took < 3.0


def test_an_answer_over_64_kib_is_not_read(
    standin: TikTokStandIn, client: TikTokClient, issued: IssuedTokens
) -> None:
    standin.script(Reply(200, b'{"pad": "', endless=True))
    tracemalloc.start()
    try:
        error = revoke_error(client, standin, issued.access_token)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024
    assert type(error) is RefreshFailed
    assert error.retryable is True
    assert error.maybe_processed is True
    assert error.reason == "TikTok's answer is larger than 64 KiB (the token may have been revoked)"


# ----------------------------------------------------------------------------- any answer

ACCESS = "act.AccessToken-Revoke_0123456789abcdefXYZ"
CODE = "Zx9_auth-CODE_0123456789abcdef*!0a1b2c3d4e5f"
VERIFIER = "verifier-0123456789.abcdefghijklmnopqrstuvwxyz_ABCDEFGHIJKLM~xyz"
CLIENT_SECRET = "client-secret-9f8e7d6c5b4a"
SECRETS = (ACCESS, CODE, VERIFIER, CLIENT_SECRET)
FIELDS = [
    "access_token",
    "refresh_token",
    "open_id",
    "expires_in",
    "refresh_expires_in",
    "scope",
    "error",
    "error_description",
    "log_id",
    "code",
    "message",
    "data",
]


def disguises(secret: str) -> list[str]:
    """The secret and pieces of it as an endpoint might echo them."""
    piece = secret[5 : 5 + FRAGMENT + 3]
    return [
        secret,
        secret.upper(),
        piece,
        piece.upper(),
        percent_encoded(piece),
        quote(quote(secret, safe=""), safe=""),
    ]


PIECES = st.sampled_from([d for secret in SECRETS for d in disguises(secret)]) | st.text(
    max_size=12
)
TEXTS = st.lists(PIECES, max_size=4).map("".join)
CODES = st.sampled_from(
    [
        "invalid_grant",
        "invalid_token",
        "access_token_invalid",
        "invalid_client",
        "unauthorized_client",
        "access_denied",
        "invalid_request",
        "server_error",
        "ok",
        "",
    ]
)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXTS | CODES
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FIELDS), inner),
    max_leaves=8,
)
OBJECTS = st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=6)
BODIES = (
    st.binary(max_size=80)
    | OBJECTS.map(lambda value: json.dumps(value).encode())
    | VALUES.map(lambda value: json.dumps(value).encode())
)
STATUSES = st.sampled_from([200, 201, 204, 302, 400, 401, 403, 429, 500, 503]) | st.integers(
    100, 599
)
HEADERS = st.fixed_dictionaries(
    {}, optional={"Retry-After": TEXTS, "X-Tt-Logid": TEXTS | st.sampled_from(SECRETS)}
)


REVOKE_SECRETS = (ACCESS, CLIENT_SECRET)
CODE_SECRETS = (CODE, CLIENT_SECRET, VERIFIER)


def assert_shows_no_secret(secrets: tuple[str, ...], *texts: str | None) -> None:
    for text in texts:
        if text is not None:
            assert safe_text(text) == text
            assert leaked_fragments(text, *secrets) == []


def revoke_outcome(status: int, headers: dict[str, str], body: bytes) -> TikTokError | None:
    """None (revoked), or the outcome exception; anything else propagates and fails."""
    try:
        answer = Answer(status, headers, body, datetime.now(UTC), 0.1)
        interpret_revoke_answer(answer, REVOKE_SECRETS)
    except (UserTokenRejected, AppCredentialsRejected, RefreshFailed) as error:
        return error
    return None


def code_outcome(status: int, headers: dict[str, str], body: bytes) -> TokenGrant | TikTokError:
    """The grant, or the outcome exception; anything else propagates and fails."""
    try:
        answer = Answer(status, headers, body, datetime.now(UTC), 0.1)
        return interpret_code_answer(answer, CODE_SECRETS)
    except (UserTokenRejected, AppCredentialsRejected, RefreshFailed) as error:
        return error


@settings(max_examples=150)
@given(status=STATUSES, headers=HEADERS, body=BODIES)
def test_any_revoke_answer_is_revoked_or_an_outcome(
    status: int, headers: dict[str, str], body: bytes
) -> None:
    outcome = revoke_outcome(status, headers, body)
    if outcome is None:  # revoked: only a 2xx said so
        assert 200 <= status < 300
        return
    if isinstance(outcome, UserTokenRejected):  # already invalid: only TikTok's own codes say so
        assert outcome.error_code in INVALID_TOKEN_CODES
    assert outcome.http_status == status
    assert_shows_no_secret(REVOKE_SECRETS, outcome.reason, outcome.error_code, outcome.log_id)


@settings(max_examples=150)
@given(status=STATUSES, headers=HEADERS, body=BODIES)
def test_any_code_answer_is_a_complete_grant_or_an_outcome(
    status: int, headers: dict[str, str], body: bytes
) -> None:
    outcome = code_outcome(status, headers, body)
    if isinstance(outcome, TokenGrant):
        assert outcome.refresh_token
        assert re.fullmatch(r"[!-~]{1,255}", outcome.open_id or "")
        assert_shows_no_secret(CODE_SECRETS, outcome.open_id)
        assert_shows_no_secret(CODE_SECRETS, outcome.log_id, *outcome.notes)
        return
    if isinstance(outcome, UserTokenRejected):
        assert outcome.reason.startswith("the authorization code was not accepted: ")
    assert outcome.http_status == status
    assert_shows_no_secret(CODE_SECRETS, outcome.reason, outcome.error_code, outcome.log_id)
