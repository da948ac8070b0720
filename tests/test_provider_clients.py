"""Each shipped profile against a stand-in of its provider written from that provider's
documents (`standin_providers.py`): the generic client sends what the provider asks for
(method, where the credentials go, which token, the grant) and reads what it answers
(rotation or not, expiries in seconds or as timestamps, an envelope, its error codes).
The TikTok profile runs through the same client in test_tiktok_*.py and here against the
TikTok stand-in."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from standin import TikTokStandIn
from standin_providers import CLIENT_ID, CLIENT_SECRET, Provider, serving
from tokenrefresh.adapters.oauth.client import ProviderClient
from tokenrefresh.base.logs import configure_logging
from tokenrefresh.base.outcomes import (
    AppCredentialsRejected,
    RefreshFailed,
    TokenGrant,
    UserTokenRejected,
)
from tokenrefresh.base.providers import shipped_profile
from tokenrefresh.base.settings import ClientCredentials, Secret

CREDENTIALS = ClientCredentials(CLIENT_ID, Secret(CLIENT_SECRET))


@pytest.fixture
def provider(request: pytest.FixtureRequest) -> Iterator[tuple[Provider, ProviderClient]]:
    name = request.param
    with serving(name) as (standin, base_url):
        client = ProviderClient(
            shipped_profile(name), credentials=CREDENTIALS, base_url=base_url, timeout=5
        )
        try:
            yield standin, client
        finally:
            client.close()


def refreshed(client: ProviderClient, token: str) -> tuple[TokenGrant, datetime]:
    before = datetime.now(UTC)
    return client.refresh(token), before


def near(moment: datetime, expected: datetime) -> bool:
    return abs(moment - expected) < timedelta(seconds=5)


def raised(client: ProviderClient, token: str) -> BaseException:
    with pytest.raises((UserTokenRejected, AppCredentialsRejected, RefreshFailed)) as caught:
        client.refresh(token)
    reason = str(caught.value)
    assert CLIENT_SECRET not in reason
    assert token not in reason
    return caught.value


# ----------------------------------------------------------------------------- X


@pytest.mark.parametrize("provider", ["x"], indirect=True)
def test_x_gets_basic_auth_and_rotates_and_the_old_token_is_refused(
    provider: tuple[Provider, ProviderClient],
) -> None:
    standin, client = provider
    standin.refresh_tokens.add("x-refresh-first")
    grant, before = refreshed(client, "x-refresh-first")
    assert grant.refresh_token in standin.refresh_tokens
    assert grant.access_token in standin.access_tokens
    assert near(grant.access_expires_at, before + timedelta(seconds=7200))
    # X states no refresh expiry: the token just worked, so its life is renewed (366 days).
    assert grant.refresh_expires_at is not None
    assert near(grant.refresh_expires_at, before + timedelta(days=366))
    assert grant.scope == "tweet.read users.read offline.access"
    sent = standin.received[0]
    assert (sent.method, sent.path) == ("POST", "/2/oauth2/token")
    assert (
        sent.headers["authorization"]
        == "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    )
    assert sent.form == {"grant_type": "refresh_token", "refresh_token": "x-refresh-first"}
    # Rotated: the old token is refused, with an answer X's docs do not call a dead grant.
    error = raised(client, "x-refresh-first")
    assert type(error) is RefreshFailed
    assert error.error_code == "invalid_request"
    assert not error.retryable


@pytest.mark.parametrize("provider", ["x"], indirect=True)
def test_x_refuses_an_app_without_its_credentials(
    provider: tuple[Provider, ProviderClient],
) -> None:
    standin, client = provider
    standin.client_secret = "another-secret"
    standin.refresh_tokens.add("x-refresh-first")
    error = raised(client, "x-refresh-first")
    assert isinstance(error, AppCredentialsRejected)
    assert error.error_code == "unauthorized_client"
    assert "x-refresh-first" in standin.refresh_tokens  # not spent


@pytest.mark.parametrize("provider", ["x"], indirect=True)
def test_x_revokes_with_a_token_type_hint(provider: tuple[Provider, ProviderClient]) -> None:
    standin, client = provider
    standin.access_tokens["x-access-1"] = 0.0
    client.revoke("x-access-1")
    assert "x-access-1" not in standin.access_tokens
    assert standin.received[0].path == "/2/oauth2/revoke"
    assert standin.received[0].form == {"token": "x-access-1", "token_type_hint": "access_token"}


# ----------------------------------------------------------------------------- Google


@pytest.mark.parametrize("provider", ["google"], indirect=True)
def test_google_keeps_the_stored_refresh_token_and_sends_credentials_in_the_body(
    provider: tuple[Provider, ProviderClient],
) -> None:
    standin, client = provider
    standin.refresh_tokens.add("1//google-refresh")
    grant, before = refreshed(client, "1//google-refresh")
    assert grant.refresh_token is None  # none came: the stored one stays
    assert grant.access_token in standin.access_tokens
    assert near(grant.access_expires_at, before + timedelta(seconds=3599))
    assert not any("refresh_token" in note for note in grant.notes)  # normal for Google
    sent = standin.received[0]
    assert "authorization" not in sent.headers
    assert sent.form == {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "grant_type": "refresh_token",
        "refresh_token": "1//google-refresh",
    }
    # Not rotated: the same refresh token works again.
    assert client.refresh("1//google-refresh").access_token in standin.access_tokens


@pytest.mark.parametrize("provider", ["google"], indirect=True)
def test_google_invalid_grant_needs_the_user_and_invalid_client_is_the_app(
    provider: tuple[Provider, ProviderClient],
) -> None:
    standin, client = provider
    error = raised(client, "1//revoked")
    assert isinstance(error, UserTokenRejected)
    assert error.error_code == "invalid_grant"
    assert str(error) == "invalid_grant (HTTP 400): Token has been expired or revoked."
    standin.client_secret = "rotated-secret"
    standin.refresh_tokens.add("1//google-refresh")
    error = raised(client, "1//google-refresh")
    assert isinstance(error, AppCredentialsRejected)
    assert error.error_code == "invalid_client"


# ----------------------------------------------------------------------------- Instagram


@pytest.mark.parametrize("provider", ["instagram"], indirect=True)
def test_instagram_refreshes_the_access_token_itself_with_a_get(
    provider: tuple[Provider, ProviderClient],
) -> None:
    standin, client = provider
    standin.access_tokens["IGQV-old"] = 0.0  # issued long ago
    grant, before = refreshed(client, "IGQV-old")
    # What the next refresh presents is the new access token: it fills the refresh slot,
    # with the same expiry.
    assert grant.refresh_token == grant.access_token
    assert grant.refresh_expires_at == grant.access_expires_at
    assert grant.access_token in standin.access_tokens
    assert grant.access_token != "IGQV-old"
    assert near(grant.access_expires_at, before + timedelta(seconds=5183944))
    sent = standin.received[0]
    assert (sent.method, sent.path) == ("GET", "/refresh_access_token")
    assert sent.query == {"grant_type": "ig_refresh_token", "access_token": "IGQV-old"}
    assert sent.form == {}
    assert "authorization" not in sent.headers


@pytest.mark.parametrize("provider", ["instagram"], indirect=True)
def test_instagram_code_190_needs_the_user_and_code_4_is_transient(
    provider: tuple[Provider, ProviderClient],
) -> None:
    standin, client = provider
    error = raised(client, "IGQV-unknown")
    assert isinstance(error, UserTokenRejected)
    assert error.error_code == "190"
    assert str(error).startswith("190 (HTTP 400): Error validating access token")
    standin.scripted.append(
        (400, {"error": {"message": "Application request limit reached", "code": 4}})
    )
    error = raised(client, "IGQV-unknown")
    assert type(error) is RefreshFailed
    assert error.retryable
    assert error.error_code == "4"


# ----------------------------------------------------------------------------- TikTok Shop


@pytest.mark.parametrize("provider", ["tiktok-shop"], indirect=True)
def test_tiktok_shop_reads_the_envelope_and_absolute_expiries(
    provider: tuple[Provider, ProviderClient],
) -> None:
    standin, client = provider
    standin.refresh_tokens.add("ROW_refresh-first")
    grant = client.refresh("ROW_refresh-first")
    assert grant.refresh_token in standin.refresh_tokens
    assert grant.access_token in standin.access_tokens
    issued = standin.access_tokens[grant.access_token or ""]
    assert near(grant.access_expires_at, datetime.fromtimestamp(issued + 7 * 86400, UTC))
    assert grant.refresh_expires_at is not None
    assert near(grant.refresh_expires_at, datetime.fromtimestamp(issued + 60 * 86400, UTC))
    assert grant.open_id == "7494shop-open-id"
    assert grant.scope == "seller.authorization.info,seller.shop.info"
    assert grant.notes == ()
    sent = standin.received[0]
    assert (sent.method, sent.path) == ("GET", "/api/v2/token/refresh")
    assert sent.query == {
        "app_key": CLIENT_ID,
        "app_secret": CLIENT_SECRET,
        "grant_type": "refresh_token",
        "refresh_token": "ROW_refresh-first",
    }


@pytest.mark.parametrize("provider", ["tiktok-shop"], indirect=True)
def test_tiktok_shop_a_non_zero_code_under_200_is_a_failure_never_a_guess(
    provider: tuple[Provider, ProviderClient],
) -> None:
    _, client = provider
    error = raised(client, "ROW_refresh-unknown")
    assert type(error) is RefreshFailed  # its codes are unsure: no reconnect on a guess
    assert not error.retryable
    assert error.error_code == "105002"
    assert str(error) == "105002 (HTTP 200): refresh token is expired"


@pytest.mark.parametrize("provider", ["tiktok-shop"], indirect=True)
def test_a_provider_whose_url_holds_the_secret_never_shows_it_when_the_call_fails(
    provider: tuple[Provider, ProviderClient],
) -> None:
    client = ProviderClient(
        shipped_profile("tiktok-shop"),
        credentials=CREDENTIALS,
        base_url="http://127.0.0.1:9",
        timeout=2,
    )
    try:
        error = raised(client, "ROW_refresh-first")
    finally:
        client.close()
    assert type(error) is RefreshFailed
    assert str(error) == "could not connect to TikTok Shop (connection refused)"
    assert error.retryable


# ----------------------------------------------------------------------------- TikTok


def test_the_tiktok_profile_through_the_generic_client_refreshes_at_the_tiktok_standin(
    standin: TikTokStandIn,
) -> None:
    issued = standin.issue("open-id-generic")
    client = ProviderClient(
        shipped_profile("tiktok"),
        credentials=ClientCredentials(standin.client_key, Secret(standin.client_secret)),
        base_url=standin.base_url,
        timeout=5,
    )
    try:
        grant, before = refreshed(client, issued.refresh_token)
    finally:
        client.close()
    assert grant.open_id == "open-id-generic"
    assert grant.refresh_token != issued.refresh_token
    assert standin.is_valid(grant.refresh_token or "")
    assert not standin.is_valid(issued.refresh_token)
    assert near(grant.access_expires_at, before + timedelta(seconds=standin.access_ttl))
    assert grant.refresh_expires_at is not None
    assert near(grant.refresh_expires_at, before + timedelta(seconds=standin.refresh_ttl))


@pytest.mark.parametrize("provider", ["tiktok-shop", "instagram"], indirect=True)
def test_debug_logs_never_show_a_query_string_that_holds_a_secret(
    provider: tuple[Provider, ProviderClient],
) -> None:
    """At -vv urllib3 logs each request line; TikTok Shop's holds the app secret and the
    refresh token, Instagram's the access token."""
    standin, client = provider
    standin.refresh_tokens.add("ROW_refresh-first")
    standin.access_tokens["IGQV-old"] = 0.0
    token = "ROW_refresh-first" if client.profile.name == "tiktok-shop" else "IGQV-old"
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging(verbose=2, stream=stream)
    try:
        client.refresh(token)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    logged = stream.getvalue()
    path = standin.received[0].path
    assert f'"GET {path}?*** HTTP/1.1" 200' in logged
    assert token not in logged
    assert CLIENT_SECRET not in logged
