"""TikTokClient against the loopback stand-in: every answer becomes a grant or one of three errors.

No database here: the client is driven directly over the real `requests` stack, and what the
stand-in received is checked as closely as what the client returned.
"""

from __future__ import annotations

import email.utils
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from helpers_tiktok import the_one_form_sent
from standin import TOKEN_PATH, IssuedTokens, Reply, TikTokStandIn
from tokenrefresh.adapters.tiktok import TikTokClient
from tokenrefresh.base.outcomes import (
    AppCredentialsRejected,
    RefreshFailed,
    TikTokError,
    TokenGrant,
    UserTokenRejected,
)
from tokenrefresh.base.settings import ClientCredentials, Secret

# The whole call's deadline: wide enough for the stand-in's thread to answer on a loaded
# machine (parallel tests), where 0.3 s was not.
TIMEOUT = 2.0
SLOWER_THAN_TIMEOUT = 4.0
LATENCY = 0.15  # below TIMEOUT
WRONG_SECRET = "not-the-app-secret-9f8e7d"


@pytest.fixture
def client(standin: TikTokStandIn) -> Iterator[TikTokClient]:
    client = make_client(standin.base_url, standin.client_key, standin.client_secret)
    yield client
    client.close()


@pytest.fixture
def issued(standin: TikTokStandIn) -> IssuedTokens:
    return standin.issue("alice")


def make_client(base_url: str, client_key: str, client_secret: str) -> TikTokClient:
    return TikTokClient(
        ClientCredentials(client_key, Secret(client_secret)),
        base_url=base_url,
        connect_timeout=TIMEOUT,
        timeout=TIMEOUT,
    )


def refresh_error(client: TikTokClient, refresh_token: str, standin: TikTokStandIn) -> TikTokError:
    """The error a refresh raises, after checking it carries no token and no secret."""
    with pytest.raises(TikTokError) as caught:
        client.refresh(refresh_token)
    error = caught.value
    assert_no_secret(error, standin, refresh_token)
    return error


def assert_rejected(
    error: TikTokError, kind: type[TikTokError], error_code: str, http_status: int, reason: str
) -> None:
    """A rejection of the user's token or of the app: its type, TikTok's code, the status and
    the whole reason."""
    assert type(error) is kind
    assert error.error_code == error_code
    assert error.http_status == http_status
    assert error.reason == reason


def assert_a_retry(error: TikTokError, *, maybe_processed: bool) -> None:
    """A RefreshFailed worth retrying; maybe_processed: whether TikTok may have rotated."""
    assert type(error) is RefreshFailed
    assert error.retryable is True
    assert error.maybe_processed is maybe_processed


def answered_with(
    reply: Reply, standin: TikTokStandIn, client: TikTokClient, issued: IssuedTokens
) -> TikTokError:
    """The error of a refresh of issued that TikTok answers with reply (checked as
    refresh_error checks it)."""
    standin.script(reply)
    return refresh_error(client, issued.refresh_token, standin)


def assert_no_secret(error: TikTokError, standin: TikTokStandIn, *extra: str) -> None:
    shown = " ".join([str(error), repr(error), error.reason, *map(str, error.args)])
    for secret in [*standin.issued_tokens, standin.client_secret, WRONG_SECRET, *extra]:
        assert secret not in shown
    assert "act." not in shown
    assert "rft." not in shown


def error_body(
    code: str, description: str = "", log_id: str = "log-20250101-abc"
) -> dict[str, Any]:
    return {"error": code, "error_description": description or code, "log_id": log_id}


# ----------------------------------------------------------------------------- success


def test_success_returns_a_grant_with_expiries_counted_from_the_request(
    standin: TikTokStandIn, client: TikTokClient, issued: IssuedTokens
) -> None:
    standin.latency = LATENCY
    before = datetime.now(UTC)
    grant = client.refresh(issued.refresh_token)
    after = datetime.now(UTC)

    assert isinstance(grant, TokenGrant)
    new_refresh_token = standin.current_refresh_token("alice")
    assert new_refresh_token is not None
    assert new_refresh_token != issued.refresh_token
    assert grant.refresh_token == new_refresh_token
    assert grant.access_token.startswith("act.")
    assert grant.access_token in standin.issued_tokens
    assert grant.access_token != issued.access_token
    assert grant.open_id == "alice"
    assert grant.scope == "user.info.basic,video.publish"
    assert grant.http_status == 200
    assert grant.log_id is None
    assert grant.notes == ()  # nothing odd about a normal answer
    assert grant.elapsed >= LATENCY

    # Counted from when the request was sent: at least the stand-in's latency before the answer.
    sent_at = grant.access_expires_at - timedelta(seconds=standin.access_ttl)
    assert before <= sent_at <= after - timedelta(seconds=LATENCY)
    assert grant.refresh_expires_at == sent_at + timedelta(seconds=standin.refresh_ttl)
    assert grant.access_expires_at.tzinfo is not None

    # The old refresh token was spent, the new one works.
    assert not standin.is_valid(issued.refresh_token)
    assert standin.refresh_count("alice") == 1
    # The grant never shows its tokens.
    assert grant.access_token not in repr(grant)
    assert new_refresh_token not in repr(grant)


def test_request_is_a_form_post_with_the_four_fields(
    standin: TikTokStandIn, client: TikTokClient, issued: IssuedTokens
) -> None:
    client.refresh(issued.refresh_token)

    received = the_one_form_sent(
        standin, TOKEN_PATH, grant_type="refresh_token", refresh_token=issued.refresh_token
    )
    headers = {name.lower(): value for name, value in received.headers.items()}
    assert headers["accept"] == "application/json"
    assert headers["accept-encoding"] == "identity"
    assert headers["user-agent"].startswith("tokenrefresh/")


def test_omitted_refresh_token_gives_none(
    standin: TikTokStandIn, client: TikTokClient, issued: IssuedTokens
) -> None:
    standin.omit_refresh_token = True
    grant = client.refresh(issued.refresh_token)
    assert grant.refresh_token is None
    assert grant.access_token is not None
    assert grant.access_token.startswith("act.")
    assert grant.open_id == "alice"
    assert grant.notes == ("no refresh_token: the stored one is kept",)


def test_one_session_keeps_its_connection_across_refreshes(
    standin: TikTokStandIn, client: TikTokClient, issued: IssuedTokens
) -> None:
    grant = client.refresh(issued.refresh_token)
    assert grant.refresh_token is not None
    client.refresh(grant.refresh_token)
    assert len(standin.received) == 2
    assert standin.accepted_connections == 1


def test_expiries_given_as_digit_strings_are_accepted(
    standin: TikTokStandIn, client: TikTokClient
) -> None:
    standin.script(
        Reply(
            body={
                "access_token": "act.scripted-access-0001",
                "expires_in": "7200",
                "refresh_token": "rft.scripted-refresh-0001",
                "refresh_expires_in": "86400",
                "open_id": "alice",
                "scope": "user.info.basic",
            }
        )
    )
    before = datetime.now(UTC)
    grant = client.refresh("rft.any-token-0001")
    sent_at = grant.access_expires_at - timedelta(seconds=7200)
    assert before <= sent_at <= datetime.now(UTC)
    assert grant.refresh_expires_at == sent_at + timedelta(seconds=86400)


# ----------------------------------------------------------------------------- a new token wins


@pytest.mark.parametrize(
    ("status", "body", "access_token", "notes"),
    [
        pytest.param(
            200,
            {
                "refresh_token": "rft.new-0010",
                "refresh_expires_in": 86400,
                "open_id": "alice",
                "scope": 42,
            },
            None,
            (
                "no usable access_token: the stored one is kept and refreshed by the next run",
                "scope is not a string: ignored",
            ),
            id="no-access-token",
        ),
        pytest.param(
            500,
            {
                "access_token": "act.new-0011",
                "expires_in": 7200,
                "refresh_token": "rft.new-0010",
                "refresh_expires_in": 86400,
                "scope": "user.info.basic",
            },
            "act.new-0011",
            ("HTTP 500 with a new token pair",),
            id="http-500",
        ),
        pytest.param(
            400,
            {
                "error": "invalid_grant",
                "error_description": "Refresh token is invalid or expired.",
                "refresh_token": "rft.new-0010",
                "refresh_expires_in": 86400,
                "scope": "user.info.basic",
            },
            None,
            (
                "HTTP 400 with a new refresh token",
                "error invalid_grant beside a new refresh token: kept",
                "no usable access_token: the stored one is kept and refreshed by the next run",
            ),
            id="beside-invalid-grant",
        ),
    ],
)
def test_a_new_refresh_token_is_a_grant_whatever_else_the_answer_says(
    standin: TikTokStandIn,
    client: TikTokClient,
    status: int,
    body: dict[str, Any],
    access_token: str | None,
    notes: tuple[str, ...],
) -> None:
    standin.script(Reply(status, body))
    before = datetime.now(UTC)
    grant = client.refresh("rft.presented-0010")
    after = datetime.now(UTC)
    assert grant.refresh_token == "rft.new-0010"
    assert grant.access_token == access_token
    assert grant.http_status == status
    assert grant.notes == notes
    assert grant.refresh_expires_at is not None
    sent_at = grant.refresh_expires_at - timedelta(seconds=86400)
    assert before <= sent_at <= after
    if access_token is None:  # the stored access token is kept, and due at once
        assert grant.access_expires_at == sent_at
    else:
        assert grant.access_expires_at == sent_at + timedelta(seconds=7200)


@pytest.mark.parametrize("expires_in", [-5, 0, None, "soon", True])
def test_an_access_token_without_a_usable_lifetime_is_due_at_once(
    standin: TikTokStandIn, client: TikTokClient, expires_in: object
) -> None:
    standin.script(Reply(200, {"access_token": "act.new-0012", "expires_in": expires_in}))
    before = datetime.now(UTC)
    grant = client.refresh("rft.presented-0012")
    after = datetime.now(UTC)
    assert grant.access_token == "act.new-0012"
    assert grant.refresh_token is None
    assert before <= grant.access_expires_at <= after  # = when the request was sent
    assert grant.refresh_expires_at is None
    assert (
        "expires_in missing or unusable: the access token is refreshed again by the next run"
        in (grant.notes)
    )


# ----------------------------------------------------------------------------- user token rejected


@pytest.mark.parametrize("status", [400, 200])
def test_invalid_grant_rejects_the_user_token_whatever_the_status(
    standin: TikTokStandIn, client: TikTokClient, issued: IssuedTokens, status: int
) -> None:
    standin.invalid_grant_status = status
    standin.revoke("alice")

    error = refresh_error(client, issued.refresh_token, standin)

    reason = f"invalid_grant (HTTP {status}): Refresh token is invalid or expired."
    assert_rejected(error, UserTokenRejected, "invalid_grant", status, reason)
    assert error.log_id is not None
    assert len(error.log_id) == 32
    assert len(standin.received) == 1


@pytest.mark.parametrize(
    ("status", "code", "description", "kind"),
    [
        pytest.param(
            403,
            "access_denied",
            "The user revoked the app.",
            UserTokenRejected,
            id="access_denied-rejects-the-user-token",
        ),
        pytest.param(
            400,
            "unauthorized_client",
            "App not allowed.",
            AppCredentialsRejected,
            id="unauthorized_client-rejects-the-app",
        ),
    ],
)
def test_a_rejecting_code_is_its_outcome(
    standin: TikTokStandIn,
    client: TikTokClient,
    issued: IssuedTokens,
    status: int,
    code: str,
    description: str,
    kind: type[TikTokError],
) -> None:
    standin.script(Reply(status, error_body(code, description)))
    error = refresh_error(client, issued.refresh_token, standin)
    assert_rejected(error, kind, code, status, f"{code} (HTTP {status}): {description}")
    assert error.log_id == "log-20250101-abc"


# ----------------------------------------------------------------------------- app rejected


def test_invalid_client_rejects_the_app(standin: TikTokStandIn, issued: IssuedTokens) -> None:
    client = make_client(standin.base_url, standin.client_key, WRONG_SECRET)
    try:
        error = refresh_error(client, issued.refresh_token, standin)
    finally:
        client.close()
    reason = "invalid_client (HTTP 401): Client key or secret is invalid."
    assert_rejected(error, AppCredentialsRejected, "invalid_client", 401, reason)
    [received] = standin.received
    assert received.form["client_secret"] == WRONG_SECRET
    # The user's token was not touched.
    assert standin.is_valid(issued.refresh_token)


def test_secret_echoed_in_a_description_is_redacted(
    standin: TikTokStandIn, client: TikTokClient, issued: IssuedTokens
) -> None:
    standin.script(
        Reply(401, error_body("invalid_client", f"bad secret {standin.client_secret} given"))
    )
    error = refresh_error(client, issued.refresh_token, standin)
    assert type(error) is AppCredentialsRejected
    assert error.reason == "invalid_client (HTTP 401): bad secret [redacted] given"


# ----------------------------------------------------------------------------- rate limits


def test_429_with_retry_after_seconds_is_retryable(
    standin: TikTokStandIn, client: TikTokClient, issued: IssuedTokens
) -> None:
    error = answered_with(Reply(429, headers={"Retry-After": "7"}), standin, client, issued)
    assert type(error) is RefreshFailed
    assert error.retryable is True
    assert error.retry_after == 7.0
    assert error.http_status == 429
    assert error.maybe_processed is False
    assert error.reason == "HTTP 429 from TikTok"


def test_429_with_retry_after_http_date_is_retryable(
    standin: TikTokStandIn, client: TikTokClient, issued: IssuedTokens
) -> None:
    when = datetime.now(UTC) + timedelta(seconds=120)
    standin.script(
        Reply(
            429,
            body={"error": {"code": "rate_limit_exceeded", "message": "slow down", "log_id": "L9"}},
            headers={"Retry-After": email.utils.format_datetime(when, usegmt=True)},
        )
    )
    error = refresh_error(client, issued.refresh_token, standin)
    assert type(error) is RefreshFailed
    assert error.retryable is True
    assert error.error_code == "rate_limit_exceeded"
    assert error.log_id == "L9"
    assert error.retry_after is not None
    # The header has whole seconds: up to 1 s less than asked, never more.
    assert 0 < error.retry_after <= 120


def test_retry_after_date_in_the_past_means_now(
    standin: TikTokStandIn, client: TikTokClient, issued: IssuedTokens
) -> None:
    standin.script(Reply(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}))
    error = refresh_error(client, issued.refresh_token, standin)
    assert isinstance(error, RefreshFailed)
    assert error.retry_after == 0.0


def test_unreadable_retry_after_is_ignored(
    standin: TikTokStandIn, client: TikTokClient, issued: IssuedTokens
) -> None:
    error = answered_with(Reply(503, headers={"Retry-After": "soon"}), standin, client, issued)
    assert isinstance(error, RefreshFailed)
    assert error.retryable is True
    assert error.retry_after is None


# ----------------------------------------------------------------------------- server errors


@pytest.mark.parametrize("status", [500, 502, 503])
@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"error": "server_error", "error_description": "oops"}, id="oauth-json"),
        pytest.param(
            {"error": {"code": "internal_error", "message": "oops", "log_id": "L1"}},
            id="data-api-json",
        ),
        pytest.param({"message": "upstream failed"}, id="json-without-error"),
        pytest.param("<html><body><h1>Bad Gateway</h1></body></html>", id="html"),
        pytest.param(None, id="empty"),
    ],
)
def test_5xx_is_retryable(
    standin: TikTokStandIn,
    client: TikTokClient,
    issued: IssuedTokens,
    status: int,
    body: dict[str, Any] | str | None,
) -> None:
    error = answered_with(Reply(status, body), standin, client, issued)
    assert_a_retry(error, maybe_processed=False)
    assert error.http_status == status
    assert f"HTTP {status}" in error.reason
    # The token was not spent, and the client did not retry by itself.
    assert standin.is_valid(issued.refresh_token)
    assert len(standin.received) == 1


def test_data_api_error_shape_is_read(
    standin: TikTokStandIn, client: TikTokClient, issued: IssuedTokens
) -> None:
    standin.script(
        Reply(
            500,
            {"error": {"code": "internal_error", "message": "try later", "log_id": "LOG-DATA-1"}},
        )
    )
    error = refresh_error(client, issued.refresh_token, standin)
    assert type(error) is RefreshFailed
    assert error.retryable is True
    assert error.error_code == "internal_error"
    assert error.log_id == "LOG-DATA-1"
    assert error.reason == "internal_error (HTTP 500): try later"


def test_data_api_ok_code_with_a_token_body_is_a_grant(
    standin: TikTokStandIn, client: TikTokClient
) -> None:
    standin.script(
        Reply(
            200,
            {
                "error": {"code": "ok", "message": "", "log_id": "LOG-OK-7"},
                "access_token": "act.scripted-access-0002",
                "expires_in": 7200,
                "refresh_token": "rft.scripted-refresh-0002",
                "refresh_expires_in": 15_552_000,
                "open_id": "bob",
                "scope": "user.info.basic",
                "token_type": "Bearer",
            },
        )
    )
    grant = client.refresh("rft.any-token-0002")
    assert grant.access_token == "act.scripted-access-0002"
    assert grant.refresh_token == "rft.scripted-refresh-0002"
    assert grant.open_id == "bob"
    assert grant.log_id == "LOG-OK-7"


@pytest.mark.parametrize("code", ["server_error", "temporarily_unavailable"])
@pytest.mark.parametrize("status", [200, 400])
def test_transient_error_codes_are_retryable_whatever_the_status(
    standin: TikTokStandIn, client: TikTokClient, issued: IssuedTokens, code: str, status: int
) -> None:
    standin.script(Reply(status, error_body(code, "busy"), headers={"Retry-After": "1"}))
    error = refresh_error(client, issued.refresh_token, standin)
    assert type(error) is RefreshFailed
    assert error.retryable is True
    assert error.retry_after == 1.0
    assert error.error_code == code
    assert error.reason == f"{code} (HTTP {status}): busy"


@pytest.mark.parametrize("code", ["invalid_request", "unsupported_grant_type", "invalid_scope"])
def test_request_errors_are_not_retryable(
    standin: TikTokStandIn, client: TikTokClient, issued: IssuedTokens, code: str
) -> None:
    error = answered_with(Reply(400, error_body(code, "no")), standin, client, issued)
    assert type(error) is RefreshFailed
    assert error.retryable is False
    assert error.error_code == code
    assert error.http_status == 400


# ----------------------------------------------------------------------------- nonsense


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(
            "<html><body>Welcome to nginx!</body></html>",
            "TikTok's answer is not a JSON object",
            id="html",
        ),
        pytest.param(b"\x00\xff garbage", "TikTok's answer is not a JSON object", id="bytes"),
        pytest.param(
            '["access_token", "expires_in"]', "TikTok's answer is not a JSON object", id="array"
        ),
        pytest.param(
            {"expires_in": 7200, "open_id": "rft.leaked-0003", "scope": "act.leaked-0004"},
            "TikTok's answer carries neither an access token nor a refresh token",
            id="no-token",
        ),
        pytest.param(
            {"access_token": "", "refresh_token": "", "expires_in": 7200},
            "TikTok's answer carries neither an access token nor a refresh token",
            id="empty-tokens",
        ),
        pytest.param(
            {"access_token": ["act.leaked-0005"], "refresh_token": {"rft": "rft.leaked-0003"}},
            "TikTok's answer carries neither an access token nor a refresh token",
            id="tokens-not-strings",
        ),
    ],
)
def test_200_without_a_usable_grant_fails(
    standin: TikTokStandIn,
    client: TikTokClient,
    issued: IssuedTokens,
    body: dict[str, Any] | str | bytes,
    reason: str,
) -> None:
    error = answered_with(Reply(200, body), standin, client, issued)
    assert type(error) is RefreshFailed
    assert error.reason == reason
    assert error.http_status == 200
    for leaked in ("rft.leaked-0003", "act.leaked-0004", "act.leaked-0005"):
        assert leaked not in str(error)


# ----------------------------------------------------------------------------- transport


def test_read_timeout_may_have_been_processed(
    standin: TikTokStandIn, client: TikTokClient, issued: IssuedTokens
) -> None:
    error = answered_with(Reply(delay=SLOWER_THAN_TIMEOUT, consume=True), standin, client, issued)
    assert_a_retry(error, maybe_processed=True)
    assert error.http_status is None
    assert error.reason == (
        "no complete answer from TikTok within 2 s (the token may have been rotated)"
    )
    assert len(standin.received) == 1
    assert standin.lost_rotation_count("alice") == 1


def test_connection_refused_was_not_processed(standin: TikTokStandIn) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    client = make_client(f"http://127.0.0.1:{closed_port}", "key", standin.client_secret)
    try:
        error = refresh_error(client, "rft.never-sent-0006", standin)
    finally:
        client.close()
    assert_a_retry(error, maybe_processed=False)
    assert error.http_status is None
    assert error.reason.startswith("could not connect to TikTok (")


def test_dropped_connection_after_sending_may_have_been_processed(
    standin: TikTokStandIn, client: TikTokClient, issued: IssuedTokens
) -> None:
    error = answered_with(Reply(drop=True, consume=True), standin, client, issued)
    assert_a_retry(error, maybe_processed=True)
    assert error.reason.startswith("connection to TikTok failed after sending (")
    assert len(standin.received) == 1


def test_no_automatic_retry_of_a_503(
    standin: TikTokStandIn, client: TikTokClient, issued: IssuedTokens
) -> None:
    standin.default = Reply(503, "<html>Service Unavailable</html>")
    refresh_error(client, issued.refresh_token, standin)
    assert len(standin.received) == 1
    assert standin.presented()[issued.refresh_token] == 1


def test_redirect_is_never_followed(
    standin: TikTokStandIn, client: TikTokClient, issued: IssuedTokens
) -> None:
    standin.script(Reply(302, headers={"Location": standin.token_url}))
    error = refresh_error(client, issued.refresh_token, standin)
    assert type(error) is RefreshFailed
    assert error.http_status == 302
    assert error.reason == "unexpected HTTP 302 from TikTok"
    [received] = standin.received
    assert received.path == TOKEN_PATH
    assert standin.is_valid(issued.refresh_token)


# ----------------------------------------------------------------------------- what errors say


def test_token_like_strings_and_the_refresh_token_are_redacted(
    standin: TikTokStandIn, client: TikTokClient
) -> None:
    plain_token = "opaque-refresh-value-5c1d2e3f"  # not shaped like rft.: only known by value
    standin.script(
        Reply(
            400,
            error_body(
                "invalid_grant",
                f"token {plain_token} was replaced by rft.abcDEF123_-xyz and act.zzzz9999",
                log_id="LOG-REDACT",
            ),
        )
    )
    error = refresh_error(client, plain_token, standin)
    assert type(error) is UserTokenRejected
    assert error.reason == (
        "invalid_grant (HTTP 400): token [redacted] was replaced by [redacted] and [redacted]"
    )
    assert error.log_id == "LOG-REDACT"


def test_description_control_characters_and_length_are_tamed(
    standin: TikTokStandIn, client: TikTokClient, issued: IssuedTokens
) -> None:
    standin.script(Reply(400, error_body("invalid_request", "line1\nline2\x1b[31m" + "x" * 500)))
    error = refresh_error(client, issued.refresh_token, standin)
    assert "\n" not in error.reason
    assert "\x1b" not in error.reason
    # Escaped visibly (safe_text), not dropped: the reader sees that something was there.
    assert error.reason.startswith("invalid_request (HTTP 400): line1\\x0aline2\\x1b[31m")
    assert error.reason.endswith("…")
    assert len(error.reason) <= len("invalid_request (HTTP 400): ") + 300


def test_log_id_comes_from_the_body_or_the_header(
    standin: TikTokStandIn, client: TikTokClient, issued: IssuedTokens
) -> None:
    standin.script(
        Reply(400, error_body("invalid_grant", log_id="BODY-LOG"), headers={"X-Tt-Logid": "HDR"}),
        Reply(503, {"message": "down"}, headers={"X-Tt-Logid": "HEADER-LOG"}),
    )
    first = refresh_error(client, issued.refresh_token, standin)
    second = refresh_error(client, issued.refresh_token, standin)
    assert first.log_id == "BODY-LOG"
    assert second.log_id == "HEADER-LOG"


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Reply(400, error_body("invalid_grant")), id="invalid_grant"),
        pytest.param(Reply(401, error_body("invalid_client")), id="invalid_client"),
        pytest.param(Reply(429, headers={"Retry-After": "3"}), id="429"),
        pytest.param(Reply(500, "<html>boom</html>"), id="500-html"),
        pytest.param(Reply(200, "<html>hello</html>"), id="200-html"),
        pytest.param(
            Reply(200, {"access_token": "", "open_id": "rft.half-grant-0007"}), id="half-grant"
        ),
        pytest.param(
            Reply(400, error_body("invalid_request", "got rft.half-grant-0007")),
            id="token-in-description",
        ),
        pytest.param(
            Reply(400, error_body("rft.half-grant-0007", log_id="rft.half-grant-0007")),
            id="token-as-code-and-log-id",
        ),
        pytest.param(Reply(delay=SLOWER_THAN_TIMEOUT), id="read-timeout"),
        pytest.param(Reply(drop=True), id="dropped"),
        pytest.param(Reply(302, headers={"Location": "/elsewhere"}), id="redirect"),
    ],
)
def test_no_error_ever_shows_a_token(
    standin: TikTokStandIn, client: TikTokClient, issued: IssuedTokens, reply: Reply
) -> None:
    standin.script(reply)
    error = refresh_error(client, issued.refresh_token, standin)
    assert "rft.half-grant-0007" not in str(error)
    assert error.__suppress_context__ or error.__context__ is None
