"""Five more networks as profiles (issue 21): TikTok API for Business, LinkedIn, Pinterest,
Reddit and Zoom, each refreshed through the real CLI and a real database against its own
stand-in (tests/standin_networks_a.py, written from the provider's documents, never from
the profile). For each: a refresh (what was sent, and where the credentials went), a second
refresh that presents what the first left, the answer that means "reconnect" (or, where no
code is known, a failure with back-off), and what is special about its answers (TikTok's
envelope, Pinterest's two expiries, LinkedIn's refresh expiry counted from consent). Last,
one table for every network of this file and tests/test_networks_b.py: its answer to
wrong client credentials. Both databases.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import Engine

from apps_setup import (
    WRONG_SECRET,
    StoreAccount,
    assert_app_rejected,
    assert_marked_for_reconnect,
    assert_untouched,
    decrypted,
    network_app,
    presented_to,
    row,
)
from conftest import Cli, CliResult
from helpers import counts
from standin_networks_a import LinkedIn, Pinterest, Reddit, TikTokBusiness, Zoom
from standin_providers import Provider, Received

FAST = ("--http-timeout", "0.3")
REDIRECT = "https://app.example/callback"


def when(value: object) -> datetime:
    """A stored time, as a UTC datetime (SQLite gives its text)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def refresh(cli: Cli, env: dict[str, str], *args: str) -> CliResult:
    return cli("refresh", "--json", *FAST, *args, env=env)


def refresh_account(
    cli: Cli, env: dict[str, str], engine: Engine, app: str, user: str
) -> CliResult:
    """A refresh of that one account, due or not (`--account-id`)."""
    return refresh(cli, env, "--account-id", str(row(engine, app, user)["id"]))


def assert_failed_without_verdict(after: dict[str, object], message: str) -> None:
    """A failure with back-off: still active, never marked for its user, tokens kept."""
    assert after["status"] == "active"
    assert after["consecutive_failures"] == 1
    assert after["next_attempt_at"] is not None
    assert after["last_error"] == message


# ----------------------------------------------------------------------------- TikTok Business


def test_tiktok_business_refreshes_with_json_and_reads_the_data_envelope(
    cli: Cli, store_account: StoreAccount, engine: Engine, fernet_key: str, tmp_path: Path
) -> None:
    with network_app("tiktok-business", tmp_path) as (business, env):
        assert isinstance(business, TikTokBusiness)
        access, old_refresh = business.issue()
        store_account("tiktok-business", business.open_id, access=access, refresh=old_refresh)
        before = datetime.now(UTC)
        first = refresh(cli, env)
        after = datetime.now(UTC)
        stored = row(engine, "tiktok-business", business.open_id)
        issued = set(business.refresh_tokens)
        second = refresh_account(cli, env, engine, "tiktok-business", business.open_id)

    assert first.exit_code == 0, first.stderr
    assert first.json()["counts"] == counts(refreshed=1)
    call = business.received[0]
    assert (call.method, call.path) == ("POST", "/open_api/v1.3/tt_user/oauth2/refresh_token/")
    assert call.headers["content-type"] == "application/json"
    assert "authorization" not in call.headers
    assert call.form == {
        "client_id": business.client_id,
        "client_secret": business.client_secret,
        "grant_type": "refresh_token",
        "refresh_token": old_refresh,
    }
    new_refresh = decrypted(fernet_key, stored["refresh_token_ciphertext"])
    assert issued == {new_refresh}
    assert new_refresh != old_refresh
    assert decrypted(fernet_key, stored["access_token_ciphertext"]) in business.access_tokens
    assert stored["scope"] == "user.info.basic,video.list"
    assert stored["status"] == "active"  # data.open_id is this account's
    # data.expires_in and data.refresh_token_expires_in are seconds from now.
    day, year = timedelta(days=1), timedelta(days=365)
    assert before + day <= when(stored["access_expires_at"]) <= after + day
    assert before + year <= when(stored["refresh_expires_at"]) <= after + year
    # The second refresh presents the refresh token the first one stored.
    assert second.exit_code == 0, second.stderr
    assert presented_to(business) == [old_refresh, new_refresh]


def test_tiktok_business_an_unknown_code_under_200_fails_with_back_off_never_reconnect(
    cli: Cli, store_account: StoreAccount, engine: Engine, tmp_path: Path
) -> None:
    with network_app("tiktok-business", tmp_path) as (business, env):
        store_account("tiktok-business", "tt-user", access="act.old", refresh="rft.unknown-here")
        before = row(engine, "tiktok-business", "tt-user")
        result = refresh(cli, env)

    assert result.exit_code == 1, result.stderr
    assert result.json()["counts"] == counts(failed=1)
    assert len(business.received) == 1  # not retried: no transient code
    after = row(engine, "tiktok-business", "tt-user")
    assert_untouched(before, after)
    assert_failed_without_verdict(
        after, "refresh failed: 40105 (HTTP 200): The refresh token is invalid or has expired"
    )


def test_tiktok_business_wrong_app_secret_is_a_failure_not_a_verdict(
    cli: Cli, store_account: StoreAccount, engine: Engine, tmp_path: Path
) -> None:
    # No code of TikTok for Business is known to mean "the app's credentials": a wrong
    # secret (40001 at the stand-in) fails each account with back-off instead of exit 3.
    with network_app("tiktok-business", tmp_path) as (business, env):
        assert isinstance(business, TikTokBusiness)
        access, refresh_token = business.issue()
        store_account("tiktok-business", business.open_id, access=access, refresh=refresh_token)
        before = row(engine, "tiktok-business", business.open_id)
        result = refresh(cli, {**env, "SECRET_OF_APP": WRONG_SECRET})

    assert result.exit_code == 1, result.stderr
    assert result.json()["stopped"] is None
    assert WRONG_SECRET not in result.stdout + result.stderr
    after = row(engine, "tiktok-business", business.open_id)
    assert_untouched(before, after)
    assert_failed_without_verdict(
        after, "refresh failed: 40001 (HTTP 200): The app_id or secret is invalid"
    )
    assert refresh_token in business.refresh_tokens  # never spent


# ----------------------------------------------------------------------------- LinkedIn


def test_tiktok_business_connect_exchanges_the_auth_code_in_json(
    cli: Cli, engine: Engine, fernet_key: str, tmp_path: Path
) -> None:
    with network_app("tiktok-business", tmp_path) as (business, env):
        assert isinstance(business, TikTokBusiness)
        code = business.issue_code(REDIRECT)
        page = cli(
            "accounts", "authorize-url", "--app", "tiktok-business", "--redirect-uri", REDIRECT,
            env=env,
        )  # fmt: skip
        connected = cli(
            "accounts", "connect", "--app", "tiktok-business", "--redirect-uri", REDIRECT,
            input=code, env=env,
        )  # fmt: skip

    assert page.exit_code == 2
    assert "the tiktok-business profile names no consent page" in page.stderr
    assert connected.exit_code == 0, connected.stderr
    stored = row(engine, "tiktok-business", business.open_id)
    assert connected.stdout == f"Connected new account {stored['id']} ({business.open_id}).\n"
    [call] = business.received
    assert (call.method, call.path) == ("POST", "/open_api/v1.3/tt_user/oauth2/token/")
    assert call.headers["content-type"] == "application/json"
    assert call.form == {
        "client_id": business.client_id,
        "client_secret": business.client_secret,
        "grant_type": "authorization_code",
        "auth_code": code,
        "redirect_uri": REDIRECT,
    }
    assert decrypted(fernet_key, stored["refresh_token_ciphertext"]) in business.refresh_tokens


def test_tiktok_business_revoke_sends_the_access_token_in_json(
    cli: Cli, store_account: StoreAccount, engine: Engine, tmp_path: Path
) -> None:
    with network_app("tiktok-business", tmp_path) as (business, env):
        assert isinstance(business, TikTokBusiness)
        access, refresh_token = business.issue()
        store_account(
            "tiktok-business", business.open_id, access=access, refresh=refresh_token,
            access_in=timedelta(hours=20),
        )  # fmt: skip
        account_id = row(engine, "tiktok-business", business.open_id)["id"]
        result = cli("accounts", "revoke", str(account_id), "--yes", env=env)

    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        f"Revoked account {account_id} ({business.open_id}) at TikTok for Business; "
        "tokens erased.\n"
    )
    [call] = business.received
    assert (call.method, call.path) == ("POST", "/open_api/v1.3/tt_user/oauth2/revoke/")
    assert call.headers["content-type"] == "application/json"
    assert call.form == {
        "client_id": business.client_id,
        "client_secret": business.client_secret,
        "access_token": access,
    }
    assert access not in business.access_tokens
    assert row(engine, "tiktok-business", business.open_id)["status"] == "revoked"


def test_linkedin_stores_the_refresh_expiry_it_is_told_and_never_extends_it(
    cli: Cli, store_account: StoreAccount, engine: Engine, fernet_key: str, tmp_path: Path
) -> None:
    with network_app("linkedin", tmp_path) as (linkedin, env):
        assert isinstance(linkedin, LinkedIn)
        access, refresh_token = linkedin.consent(days_ago=100)  # 265 days of refresh left
        dies = datetime.fromtimestamp(linkedin.refresh_expires[refresh_token], UTC)
        # Due: 6 days left of a 60-day access token, inside LinkedIn's 7-day window.
        store_account(
            "linkedin",
            "li-member",
            access=access,
            refresh=refresh_token,
            access_in=timedelta(days=6),
            refresh_in=timedelta(days=265),
        )
        before = datetime.now(UTC)
        first = refresh(cli, env)
        after = datetime.now(UTC)
        stored = row(engine, "linkedin", "li-member")
        second = refresh_account(cli, env, engine, "linkedin", "li-member")
        again = row(engine, "linkedin", "li-member")

    assert first.exit_code == 0, first.stderr
    assert first.json()["counts"] == counts(refreshed=1)
    call = linkedin.received[0]
    assert (call.method, call.path) == ("POST", "/oauth/v2/accessToken")
    assert "authorization" not in call.headers  # the credentials go in the body
    assert call.form == {
        "client_id": linkedin.client_id,
        "client_secret": linkedin.client_secret,
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
    }
    sixty = timedelta(days=60)
    assert before + sixty <= when(stored["access_expires_at"]) <= after + sixty
    # The refresh token keeps the expiry of its consent 100 days ago: what the answer says,
    # never 365 days from now.
    slack = timedelta(seconds=1)  # the answer states whole seconds
    assert dies - timedelta(days=1) < when(stored["refresh_expires_at"]) <= dies + slack
    assert when(again["refresh_expires_at"]) <= when(stored["refresh_expires_at"]) + slack
    assert second.exit_code == 0, second.stderr
    assert presented_to(linkedin) == [refresh_token, refresh_token]
    assert decrypted(fernet_key, again["refresh_token_ciphertext"]) == refresh_token
    assert decrypted(fernet_key, again["access_token_ciphertext"]) in linkedin.access_tokens


def test_linkedin_an_expired_refresh_token_means_reconnect(
    cli: Cli, store_account: StoreAccount, engine: Engine, tmp_path: Path
) -> None:
    with network_app("linkedin", tmp_path) as (linkedin, env):
        assert isinstance(linkedin, LinkedIn)
        access, refresh_token = linkedin.consent(days_ago=366)  # its year is over
        store_account(
            "linkedin",
            "li-member",
            access=access,
            refresh=refresh_token,
            access_in=timedelta(days=1),
        )
        result = refresh(cli, env)

    assert_marked_for_reconnect(
        result,
        engine,
        "linkedin",
        "li-member",
        "LinkedIn rejected the refresh token: invalid_grant (HTTP 400): The provided "
        "authorization grant or refresh token is invalid, expired or revoked",
    )


# ----------------------------------------------------------------------------- Pinterest


def test_pinterest_continuous_refresh_with_basic_and_its_two_expiries(
    cli: Cli, store_account: StoreAccount, engine: Engine, fernet_key: str, tmp_path: Path
) -> None:
    with network_app("pinterest", tmp_path) as (pinterest, env):
        assert isinstance(pinterest, Pinterest)
        access, old_refresh = pinterest.consent()
        store_account("pinterest", "pin-user", access=access, refresh=old_refresh)
        before = datetime.now(UTC)
        first = refresh(cli, env)
        after = datetime.now(UTC)
        stored = row(engine, "pinterest", "pin-user")
        issued = set(pinterest.refresh_tokens)
        second = refresh_account(cli, env, engine, "pinterest", "pin-user")

    assert first.exit_code == 0, first.stderr
    assert first.json()["counts"] == counts(refreshed=1)
    call = pinterest.received[0]
    assert (call.method, call.path) == ("POST", "/v5/oauth/token")
    assert pinterest.basic_credentials(call) == (pinterest.client_id, pinterest.client_secret)
    assert call.form == {
        "continuous_refresh": "true",
        "grant_type": "refresh_token",
        "refresh_token": old_refresh,
    }
    new_refresh = decrypted(fernet_key, stored["refresh_token_ciphertext"])
    assert issued == {new_refresh}
    assert new_refresh != old_refresh
    # refresh_token_expires_in is seconds (60 days); refresh_token_expires_at, a Unix time,
    # is not misread as seconds (which would be cut to the 366-day ceiling).
    sixty, thirty = timedelta(days=60), timedelta(days=30)
    assert before + sixty <= when(stored["refresh_expires_at"]) <= after + sixty
    assert before + thirty <= when(stored["access_expires_at"]) <= after + thirty
    assert second.exit_code == 0, second.stderr
    assert presented_to(pinterest) == [old_refresh, new_refresh]


def test_pinterest_an_invalid_grant_code_means_reconnect(
    cli: Cli, store_account: StoreAccount, engine: Engine, tmp_path: Path
) -> None:
    with network_app("pinterest", tmp_path) as (_, env):
        store_account("pinterest", "pin-user", access="pina-old", refresh="pinr-unknown-here")
        result = refresh(cli, env)

    assert_marked_for_reconnect(
        result,
        engine,
        "pinterest",
        "pin-user",
        "Pinterest rejected the refresh token: 283 (HTTP 401): The authorization grant is invalid",
    )


# ----------------------------------------------------------------------------- Reddit


def test_reddit_keeps_its_refresh_token_and_presents_it_again(
    cli: Cli, store_account: StoreAccount, engine: Engine, fernet_key: str, tmp_path: Path
) -> None:
    with network_app("reddit", tmp_path) as (reddit, env):
        assert isinstance(reddit, Reddit)
        access, refresh_token = reddit.consent()
        store_account("reddit", "t2_reddit", access=access, refresh=refresh_token)
        before = row(engine, "reddit", "t2_reddit")
        first = refresh(cli, env)
        stored = row(engine, "reddit", "t2_reddit")
        second = refresh_account(cli, env, engine, "reddit", "t2_reddit")
        again = row(engine, "reddit", "t2_reddit")

    assert first.exit_code == 0, first.stderr
    assert first.json()["counts"] == counts(refreshed=1)
    call = reddit.received[0]
    assert (call.method, call.path) == ("POST", "/api/v1/access_token")
    assert reddit.basic_credentials(call) == (reddit.client_id, reddit.client_secret)
    assert call.form == {"grant_type": "refresh_token", "refresh_token": refresh_token}
    assert call.headers["user-agent"].startswith("tokenrefresh/")
    # No refresh token comes back: the stored one stays, and as Reddit states no expiry and
    # the token just worked, its life is renewed (the profile's 3650 days from the refresh).
    assert decrypted(fernet_key, stored["refresh_token_ciphertext"]) == refresh_token
    assert when(stored["refresh_expires_at"]) > when(before["refresh_expires_at"])
    assert when(stored["refresh_expires_at"]) > datetime.now(UTC) + timedelta(days=3649)
    assert decrypted(fernet_key, stored["access_token_ciphertext"]) in reddit.access_tokens
    assert decrypted(fernet_key, stored["access_token_ciphertext"]) != access
    assert stored["scope"] == "identity read"
    assert second.exit_code == 0, second.stderr
    assert presented_to(reddit) == [refresh_token, refresh_token]
    assert decrypted(fernet_key, again["refresh_token_ciphertext"]) == refresh_token


def test_reddit_invalid_grant_means_reconnect(
    cli: Cli, store_account: StoreAccount, engine: Engine, tmp_path: Path
) -> None:
    with network_app("reddit", tmp_path) as (_, env):
        store_account("reddit", "t2_reddit", access="eyJold", refresh="revoked-by-the-user")
        result = refresh(cli, env)

    assert_marked_for_reconnect(
        result,
        engine,
        "reddit",
        "t2_reddit",
        "Reddit rejected the refresh token: invalid_grant (HTTP 400)",
    )


def test_reddit_consent_asks_for_a_permanent_grant(cli: Cli, tmp_path: Path) -> None:
    with network_app("reddit", tmp_path) as (reddit, env):
        result = cli(
            "accounts", "authorize-url", "--app", "reddit", "--redirect-uri", REDIRECT, "--json",
            env=env,
        )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    page = result.json()
    url = urlsplit(str(page["url"]))
    assert url.path == "/api/v1/authorize"
    assert {name: values[0] for name, values in parse_qs(url.query).items()} == {
        "client_id": reddit.client_id,
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "state": page["state"],
        "scope": "identity read",
        "duration": "permanent",
    }
    assert reddit.received == []


def test_reddit_revoke_sends_the_refresh_token_with_its_hint(
    cli: Cli, store_account: StoreAccount, engine: Engine, tmp_path: Path
) -> None:
    with network_app("reddit", tmp_path) as (reddit, env):
        assert isinstance(reddit, Reddit)
        access, refresh_token = reddit.consent()
        store_account("reddit", "t2_reddit", access=access, refresh=refresh_token)
        account_id = row(engine, "reddit", "t2_reddit")["id"]
        result = cli("accounts", "revoke", str(account_id), "--yes", env=env)

    assert result.exit_code == 0, result.stderr
    [call] = reddit.received
    assert call.path == "/api/v1/revoke_token"
    assert call.form == {"token": refresh_token, "token_type_hint": "refresh_token"}
    assert reddit.basic_credentials(call) == (reddit.client_id, reddit.client_secret)
    assert refresh_token not in reddit.refresh_tokens
    assert row(engine, "reddit", "t2_reddit")["status"] == "revoked"


# ----------------------------------------------------------------------------- Zoom


def test_zoom_rotates_and_the_second_refresh_presents_the_new_token(
    cli: Cli, store_account: StoreAccount, engine: Engine, fernet_key: str, tmp_path: Path
) -> None:
    with network_app("zoom", tmp_path) as (zoom, env):
        assert isinstance(zoom, Zoom)
        access, old_refresh = zoom.consent()
        store_account("zoom", "zoom-user", access=access, refresh=old_refresh)
        before = datetime.now(UTC)
        first = refresh(cli, env)
        after = datetime.now(UTC)
        stored = row(engine, "zoom", "zoom-user")
        second = refresh_account(cli, env, engine, "zoom", "zoom-user")
        again = row(engine, "zoom", "zoom-user")

    assert first.exit_code == 0, first.stderr
    assert first.json()["counts"] == counts(refreshed=1)
    call = zoom.received[0]
    assert (call.method, call.path) == ("POST", "/oauth/token")
    assert zoom.basic_credentials(call) == (zoom.client_id, zoom.client_secret)
    assert call.form == {"grant_type": "refresh_token", "refresh_token": old_refresh}
    new_refresh = decrypted(fernet_key, stored["refresh_token_ciphertext"])
    assert new_refresh != old_refresh
    hour = timedelta(seconds=3599)
    assert before + hour <= when(stored["access_expires_at"]) <= after + hour
    assert second.exit_code == 0, second.stderr
    assert presented_to(zoom) == [old_refresh, new_refresh]
    newest = decrypted(fernet_key, again["refresh_token_ciphertext"])
    assert zoom.refresh_tokens == {newest}  # only the latest works at Zoom
    assert again["token_generation"] == 3


def test_zoom_a_superseded_refresh_token_means_reconnect(
    cli: Cli, store_account: StoreAccount, engine: Engine, tmp_path: Path
) -> None:
    with network_app("zoom", tmp_path) as (zoom, env):
        assert isinstance(zoom, Zoom)
        access, superseded = zoom.consent()
        zoom.refresh_tokens.discard(superseded)  # another client refreshed it first
        store_account("zoom", "zoom-user", access=access, refresh=superseded)
        result = refresh(cli, env)

    assert_marked_for_reconnect(
        result,
        engine,
        "zoom",
        "zoom-user",
        "Zoom rejected the refresh token: invalid_grant (HTTP 400): Invalid Token!",
    )


# ----------------------------------------------------------------------------- every network

# Each network's answer to an app's wrong secret, as its stand-in gives it from the
# provider's documents: (profile, label, what the provider said, where the secret goes).
WRONG_APP = [
    ("linkedin", "LinkedIn", "invalid_client (HTTP 401): Client authentication failed", "body"),
    ("pinterest", "Pinterest", "2 (HTTP 401): Authentication failed.", "basic"),
    # Reddit's `"error": 401` is a number where its other codes are text: read as its
    # digits, it is listed with the app's refusals (see reddit.toml).
    ("reddit", "Reddit", "401 (HTTP 401)", "basic"),
    ("zoom", "Zoom", "invalid_client (HTTP 401): Invalid client_id or client_secret", "basic"),
    ("spotify", "Spotify", "invalid_client (HTTP 400): Invalid client", "basic"),
    # Dropbox's {"error": "invalid_client: Invalid client_id or client_secret"} runs the
    # description into the code: the code is what comes before the colon.
    (
        "dropbox",
        "Dropbox",
        "invalid_client (HTTP 400): Invalid client_id or client_secret",
        "basic",
    ),
    ("xero", "Xero", "invalid_client (HTTP 400)", "basic"),
]


def secret_sent(provider: Provider, call: Received, where: str) -> str | None:
    if where == "basic":
        credentials = provider.basic_credentials(call)
        return None if credentials is None else credentials[1]
    return call.form.get("client_secret")


@pytest.mark.parametrize(
    ("profile", "label", "said", "where"), WRONG_APP, ids=[network[0] for network in WRONG_APP]
)
def test_wrong_client_credentials_stop_the_apps_part_and_spend_no_token(
    cli: Cli,
    store_account: StoreAccount,
    engine: Engine,
    tmp_path: Path,
    profile: str,
    label: str,
    said: str,
    where: str,
) -> None:
    users = ("user-1", "user-2")
    with network_app(profile, tmp_path) as (provider, env):
        pairs = {user: provider.consent() for user in users}
        for user, (access, refresh_token) in pairs.items():
            store_account(profile, user, access=access, refresh=refresh_token)
        before = {user: row(engine, profile, user) for user in users}
        result = refresh(cli, {**env, "SECRET_OF_APP": WRONG_SECRET})

    assert_app_rejected(result, tmp_path / f"{profile}.toml", label, said)
    for user in users:
        after = row(engine, profile, user)
        assert_untouched(before[user], after)
        assert after["last_error"] is None
    assert 1 <= len(provider.received) <= len(users)  # at most the calls already in flight
    assert {secret_sent(provider, call, where) for call in provider.received} == {WRONG_SECRET}
    assert provider.refresh_tokens == {refresh for _, refresh in pairs.values()}  # none spent
