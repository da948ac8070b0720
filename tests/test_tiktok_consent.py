"""TikTokClient.exchange_code against the loopback stand-in: an authorization code becomes a
new account's token pair once, or one of the three outcome exceptions, within the same
deadline and body cap as a refresh, and no exception shows a fragment of a secret.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest

from helpers_tiktok import (
    WRONG_SECRET,
    assert_hides,
    make_client,
    percent_encoded,
    the_one_form_sent,
)
from standin import TOKEN_PATH, Reply, TikTokStandIn
from tokenrefresh.adapters.tiktok import TikTokClient, code_challenge, new_code_verifier
from tokenrefresh.base.outcomes import (
    AppCredentialsRejected,
    RefreshFailed,
    TikTokError,
    TokenGrant,
    UnusableGrant,
    UserTokenRejected,
)

SLOWER_THAN_TIMEOUT = 1.0
REDIRECT = "http://127.0.0.1:8765/callback"
REJECTED = "the authorization code was not accepted: invalid_grant (HTTP 400): "


@pytest.fixture
def client(standin: TikTokStandIn) -> Iterator[TikTokClient]:
    with closing(make_client(standin, standin.client_secret)) as client:
        yield client


def exchange_error(
    client: TikTokClient, standin: TikTokStandIn, code: str, **kwargs: Any
) -> TikTokError:
    """The error an exchange raises, after checking it shows no secret of the call."""
    kwargs.setdefault("redirect_uri", REDIRECT)
    with pytest.raises(TikTokError) as caught:
        client.exchange_code(code, **kwargs)
    error = caught.value
    secrets = [
        code,
        standin.client_secret,
        WRONG_SECRET,
        *standin.issued_tokens,
        *standin.issued_codes,
    ]
    if kwargs.get("code_verifier"):
        secrets.append(kwargs["code_verifier"])
    assert_hides(error, *secrets)
    return error


def pkce_code(
    standin: TikTokStandIn, open_id: str, encoding: Literal["hex", "base64url"]
) -> tuple[str, str]:
    """An authorization code bound to a new verifier's challenge in that encoding, and the
    verifier."""
    verifier = new_code_verifier()
    code = standin.authorize(
        open_id,
        redirect_uri=REDIRECT,
        code_challenge=code_challenge(verifier, encoding),
        challenge_encoding=encoding,
    )
    return code, verifier


# ----------------------------------------------------------------------------- success


def test_a_code_becomes_a_grant_and_the_form_is_exactly_the_five_fields(
    standin: TikTokStandIn, client: TikTokClient
) -> None:
    code = standin.authorize("alice", redirect_uri=REDIRECT, scope="user.info.basic")
    before = datetime.now(UTC)
    grant = client.exchange_code(code, redirect_uri=REDIRECT)
    after = datetime.now(UTC)

    received = the_one_form_sent(
        standin, TOKEN_PATH, code=code, grant_type="authorization_code", redirect_uri=REDIRECT
    )
    assert b"%2A%21" in received.body  # the code's "*!" form-encoded, not sent raw

    assert isinstance(grant, TokenGrant)
    assert grant.open_id == "alice"
    assert grant.scope == "user.info.basic"
    assert grant.refresh_token == standin.current_refresh_token("alice")
    assert grant.access_token in standin.issued_tokens
    assert grant.notes == ()
    sent_at = grant.access_expires_at - timedelta(seconds=standin.access_ttl)
    assert before <= sent_at <= after
    assert grant.refresh_expires_at == sent_at + timedelta(seconds=standin.refresh_ttl)
    assert standin.exchange_count("alice") == 1
    assert not standin.is_code_pending(code)
    # The pair is a working one: the refresh token refreshes.
    assert grant.refresh_token is not None
    assert client.refresh(grant.refresh_token).open_id == "alice"


@pytest.mark.parametrize("encoding", ["hex", "base64url"])
def test_pkce_right_verifier_is_sent_and_accepted(
    standin: TikTokStandIn, client: TikTokClient, encoding: Literal["hex", "base64url"]
) -> None:
    code, verifier = pkce_code(standin, "bob", encoding)
    grant = client.exchange_code(code, redirect_uri=REDIRECT, code_verifier=verifier)
    assert grant.open_id == "bob"
    assert standin.received[0].form["code_verifier"] == verifier
    assert set(standin.received[0].form) == {
        "client_key",
        "client_secret",
        "code",
        "grant_type",
        "redirect_uri",
        "code_verifier",
    }


# ----------------------------------------------------------------------------- rejected codes


@pytest.mark.parametrize("encoding", ["hex", "base64url"])
@pytest.mark.parametrize(
    ("verifier", "description"),
    [
        pytest.param(None, "Code verifier is required.", id="missing"),
        pytest.param("w" * 64, "Code verifier or code challenge is invalid.", id="wrong"),
    ],
)
def test_pkce_wrong_or_missing_verifier_is_rejected_and_spends_the_code(
    standin: TikTokStandIn,
    client: TikTokClient,
    encoding: Literal["hex", "base64url"],
    verifier: str | None,
    description: str,
) -> None:
    code, right = pkce_code(standin, "carol", encoding)
    error = exchange_error(client, standin, code, code_verifier=verifier)
    assert type(error) is UserTokenRejected
    assert error.reason == REJECTED + description
    assert error.error_code == "invalid_grant"
    assert "code_verifier" not in standin.received[0].form or verifier is not None
    again = exchange_error(client, standin, code, code_verifier=right)
    assert again.reason == REJECTED + "Authorization code has already been used."
    assert standin.issued_tokens == []


def test_a_base64url_challenge_where_hex_is_checked_is_rejected(
    standin: TikTokStandIn, client: TikTokClient
) -> None:
    verifier = new_code_verifier()
    code = standin.authorize(
        "dave", redirect_uri=REDIRECT, code_challenge=code_challenge(verifier, "base64url")
    )
    error = exchange_error(client, standin, code, code_verifier=verifier)
    assert error.reason == REJECTED + "Code verifier or code challenge is invalid."


def test_a_reused_code_is_rejected_and_nothing_new_is_issued(
    standin: TikTokStandIn, client: TikTokClient
) -> None:
    code = standin.authorize("erin", redirect_uri=REDIRECT)
    client.exchange_code(code, redirect_uri=REDIRECT)
    issued = standin.issued_tokens
    error = exchange_error(client, standin, code)
    assert type(error) is UserTokenRejected
    assert error.reason == REJECTED + "Authorization code has already been used."
    assert error.http_status == 400
    assert error.log_id is not None
    assert standin.issued_tokens == issued
    assert standin.exchange_count() == 1
    assert len(standin.received) == 2  # no retry


@pytest.mark.parametrize(
    ("redirect_uri", "status"),
    [("http://127.0.0.1:8765/callback/", 400), ("https://example.com/callback", 200)],
)
def test_a_wrong_redirect_uri_is_rejected_at_any_status(
    standin: TikTokStandIn, client: TikTokClient, redirect_uri: str, status: int
) -> None:
    standin.invalid_grant_status = status
    code = standin.authorize("fay", redirect_uri=REDIRECT)
    error = exchange_error(client, standin, code, redirect_uri=redirect_uri)
    assert type(error) is UserTokenRejected
    assert error.reason == (
        f"the authorization code was not accepted: invalid_grant (HTTP {status}): "
        "redirect_uri does not match the one of the authorization request."
    )
    assert standin.received[0].form["redirect_uri"] == redirect_uri
    assert not standin.is_code_pending(code)


def test_access_denied_is_a_rejected_code(standin: TikTokStandIn, client: TikTokClient) -> None:
    code = standin.authorize("gus", redirect_uri=REDIRECT)
    standin.script(
        Reply(403, {"error": "access_denied", "error_description": "User said no."}),
        open_id="gus",
    )
    error = exchange_error(client, standin, code)
    assert type(error) is UserTokenRejected
    assert error.error_code == "access_denied"
    assert error.reason == (
        "the authorization code was not accepted: access_denied (HTTP 403): User said no."
    )


def test_an_expired_code_is_rejected(standin: TikTokStandIn, client: TikTokClient) -> None:
    standin.code_ttl = 0.0
    code = standin.authorize("hal", redirect_uri=REDIRECT)
    error = exchange_error(client, standin, code)
    assert error.reason == REJECTED + "Authorization code has expired."


def test_a_wrong_client_secret_rejects_the_app_and_leaves_the_code(
    standin: TikTokStandIn,
) -> None:
    code = standin.authorize("ivy", redirect_uri=REDIRECT)
    client = make_client(standin, WRONG_SECRET)
    try:
        error = exchange_error(client, standin, code)
    finally:
        client.close()
    assert type(error) is AppCredentialsRejected
    assert error.reason == "invalid_client (HTTP 401): Client key or secret is invalid."
    assert standin.is_code_pending(code)


# ----------------------------------------------------------------------------- incomplete grants


@pytest.mark.parametrize(
    ("removed", "reason"),
    [
        pytest.param(("refresh_token",), "lacks a refresh token", id="refresh-token"),
        pytest.param(("open_id",), "carries no usable open_id: it has none", id="open-id"),
        pytest.param(("refresh_token", "open_id"), "lacks a refresh token", id="both"),
    ],
)
def test_a_grant_without_refresh_token_or_open_id_fails_for_good(
    standin: TikTokStandIn, client: TikTokClient, removed: tuple[str, ...], reason: str
) -> None:
    code = standin.authorize("jack", redirect_uri=REDIRECT)
    standin.twist(
        "jack", lambda payload: (200, {k: v for k, v in payload.items() if k not in removed})
    )
    error = exchange_error(client, standin, code)
    assert type(error) is UnusableGrant
    assert error.retryable is False
    assert error.maybe_processed is True
    assert error.http_status == 200
    assert error.reason == f"TikTok's answer to the authorization code {reason}"
    assert standin.exchange_count("jack") == 1


def test_an_empty_open_id_is_missing_too(standin: TikTokStandIn, client: TikTokClient) -> None:
    code = standin.authorize("kim", redirect_uri=REDIRECT)
    standin.twist("kim", lambda payload: (200, {**payload, "open_id": ""}))
    error = exchange_error(client, standin, code)
    assert error.reason == (
        "TikTok's answer to the authorization code carries no usable open_id: it has none"
    )


# ----------------------------------------------------------------------------- other failures


def test_a_timeout_after_sending_says_the_code_may_have_been_used(
    standin: TikTokStandIn, client: TikTokClient
) -> None:
    code = standin.authorize("lee", redirect_uri=REDIRECT)
    standin.script(Reply(delay=SLOWER_THAN_TIMEOUT, consume=True), open_id="lee")
    error = exchange_error(client, standin, code)
    assert type(error) is RefreshFailed
    assert error.maybe_processed is True
    assert error.reason == (
        "no complete answer from TikTok within 0.3 s (the authorization code may have been used)"
    )
    assert standin.lost_exchange_count("lee") == 1
    assert not standin.is_code_pending(code)


@pytest.mark.parametrize(
    ("reply", "retryable", "reason"),
    [
        pytest.param(Reply(503), True, "HTTP 503 from TikTok", id="503"),
        pytest.param(
            Reply(429, headers={"Retry-After": "4"}), True, "HTTP 429 from TikTok", id="429"
        ),
        pytest.param(
            Reply(400, {"error": "invalid_request", "error_description": "bad"}),
            False,
            "invalid_request (HTTP 400): bad",
            id="invalid-request",
        ),
        pytest.param(
            Reply(200, "<html>hi</html>"),
            True,
            "TikTok's answer is not a JSON object",
            id="html",
        ),
    ],
)
def test_other_answers_fail_as_for_a_refresh(
    standin: TikTokStandIn, client: TikTokClient, reply: Reply, retryable: bool, reason: str
) -> None:
    code = standin.authorize("max", redirect_uri=REDIRECT)
    standin.script(reply, open_id="max")
    error = exchange_error(client, standin, code)
    assert type(error) is RefreshFailed
    assert error.retryable is retryable
    assert error.reason == reason
    assert standin.is_code_pending(code)  # a scripted answer: the stand-in spent nothing


def test_empty_arguments_are_refused_before_sending(
    standin: TikTokStandIn, client: TikTokClient
) -> None:
    for args, kwargs in [
        (("",), {"redirect_uri": REDIRECT}),
        (("some-code",), {"redirect_uri": ""}),
        (("some-code",), {"redirect_uri": REDIRECT, "code_verifier": ""}),
    ]:
        with pytest.raises(ValueError, match="must not be empty") as caught:
            client.exchange_code(*args, **kwargs)
        assert "some-code" not in str(caught.value)
    assert standin.received == []


# ----------------------------------------------------------------------------- secrets


def test_echoed_fragments_of_every_secret_are_masked(
    standin: TikTokStandIn, client: TikTokClient
) -> None:
    verifier = new_code_verifier()
    code = standin.authorize("nia", redirect_uri=REDIRECT, code_challenge=code_challenge(verifier))
    secret = standin.client_secret
    echo = (
        f"code {code[2:20].upper()} / {percent_encoded(code[10:40])} / {code.lower()} / "
        f"secret {secret[1:17].upper()} / {percent_encoded(secret)} / "
        f"verifier {verifier[5:30].upper()} / {percent_encoded(verifier[30:60])} / end"
    )
    standin.script(
        Reply(400, {"error": "invalid_grant", "error_description": echo, "log_id": code[:20]}),
        open_id="nia",
    )
    error = exchange_error(client, standin, code, code_verifier=verifier)
    assert type(error) is UserTokenRejected
    assert error.log_id is None  # a fragment of the code is no log_id
    assert error.reason == REJECTED + (
        "code [redacted] / [redacted] / [redacted] / secret [redacted] / [redacted] / "
        "verifier [redacted] / [redacted] / end"
    )


def test_a_twisted_answer_echoing_the_code_and_new_tokens_is_masked(
    standin: TikTokStandIn, client: TikTokClient
) -> None:
    """The exchange happens for real; the answer echoes its own pair and the code."""
    code = standin.authorize("oli", redirect_uri=REDIRECT)

    def echo(payload: dict[str, Any]) -> tuple[int, Any]:
        access = payload["access_token"]
        return 500, {
            "error": "server_error",
            "error_description": f"{percent_encoded(code)} {access[4:30].upper()} {code.upper()}",
            "access_token": access,
        }

    standin.twist("oli", echo)
    error = exchange_error(client, standin, code)
    assert type(error) is RefreshFailed
    assert error.retryable is True
    assert error.reason == "server_error (HTTP 500): [redacted] [redacted] [redacted]"


# ----------------------------------------------------------------------------- bounds


def test_a_trickled_answer_ends_near_the_deadline(standin: TikTokStandIn) -> None:
    code = standin.authorize("pam", redirect_uri=REDIRECT)
    body = json.dumps({"access_token": "act.x", "refresh_token": "rft.y", "open_id": "pam"})
    standin.script(Reply(200, body.encode(), trickle=0.2), open_id="pam")  # 15 s in all
    client = make_client(standin, standin.client_secret, timeout=1.0)
    try:
        started = time.monotonic()
        error = exchange_error(client, standin, code)
        took = time.monotonic() - started
    finally:
        client.close()
    assert type(error) is RefreshFailed
    assert error.reason == (
        "no complete answer from TikTok within 1 s (the authorization code may have been used)"
    )
    assert 1.0 <= took < 3.0


def test_an_answer_over_64_kib_is_not_read(standin: TikTokStandIn, client: TikTokClient) -> None:
    code = standin.authorize("quin", redirect_uri=REDIRECT)
    standin.script(Reply(200, b'{"refresh_token": "rft.x", "pad": "', endless=True), open_id="quin")
    tracemalloc.start()
    try:
        error = exchange_error(client, standin, code)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024
    assert type(error) is RefreshFailed
    assert error.reason == (
        "TikTok's answer is larger than 64 KiB (the authorization code may have been used)"
    )
    assert error.maybe_processed is True
