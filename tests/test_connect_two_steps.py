"""Connecting the accounts whose code exchange is not RFC 6749's one POST (issue 20):
Instagram's code gives a short-lived token that a second call exchanges for the long-lived
one a refresh presents; TikTok Shop's exchange is a GET of the app key and secret and the
`auth_code`, with no consent page of ours. The stand-ins' exchanges are written from Meta's
and TikTok Shop's documents (tests/standin_providers.py). Both databases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import Engine

from apps_setup import app_config, decrypted, row
from conftest import Cli
from standin_providers import Instagram, Provider, graph_error, serving
from tokenrefresh import TokenStore

REDIRECT = "https://app.example/callback"
INSTAGRAM_USER = str(Instagram.user_id)


@pytest.fixture
def instagram(tmp_path: Path) -> Iterator[tuple[Provider, dict[str, str]]]:
    with serving("instagram") as (provider, base_url):
        env = app_config(tmp_path / "config.toml", "ig", provider, base_url, profile="instagram")
        yield provider, env


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[tuple[Provider, dict[str, str]]]:
    with serving("tiktok-shop") as (provider, base_url):
        env = app_config(
            tmp_path / "config.toml", "shop", provider, base_url, profile="tiktok-shop"
        )
        yield provider, env


def _when(value: object) -> datetime:
    """A stored timestamp (a datetime, or SQLite's text of one) in UTC."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC)


def _connect(cli: Cli, env: dict[str, str], app: str, code: str, *extra: str) -> object:
    return cli(
        "accounts", "connect", "--app", app, "--redirect-uri", REDIRECT, *extra,
        input=code, env=env,
    )  # fmt: skip


@pytest.mark.parametrize("in_data", [True, False], ids=["data-envelope", "flat"])
def test_instagram_connect_exchanges_the_short_lived_token_for_the_long_lived_one(
    cli: Cli,
    instagram: tuple[Provider, dict[str, str]],
    engine: Engine,
    fernet_key: str,
    in_data: bool,
) -> None:
    provider, env = instagram
    assert isinstance(provider, Instagram)
    provider.code_answer_in_data = in_data
    page = cli(
        "accounts", "authorize-url", "--app", "ig", "--redirect-uri", REDIRECT, "--json", env=env
    )  # fmt: skip
    assert page.exit_code == 0, page.stderr
    url = urlsplit(page.json()["url"])
    assert url.path == "/oauth/authorize"
    assert {name: values[0] for name, values in parse_qs(url.query).items()} == {
        "client_id": provider.client_id,
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "state": page.json()["state"],
        "scope": "instagram_business_basic",
    }
    code = provider.issue_code(REDIRECT)
    before = datetime.now(UTC)

    result = _connect(cli, env, "ig", code, "--label", "Shop window")

    assert result.exit_code == 0, result.stderr
    stored = row(engine, "ig", INSTAGRAM_USER)
    assert result.stdout == f"Connected new account {stored['id']} ({INSTAGRAM_USER}).\n"
    first, second = provider.received
    assert (first.method, first.path) == ("POST", "/oauth/access_token")
    assert first.form == {
        "client_id": provider.client_id,
        "client_secret": provider.client_secret,
        "code": code,
        "grant_type": "authorization_code",
        "redirect_uri": REDIRECT,
    }
    assert (second.method, second.path, second.form) == ("GET", "/access_token", {})
    assert second.query["grant_type"] == "ig_exchange_token"
    assert second.query["client_secret"] == provider.client_secret
    assert "client_id" not in second.query
    assert provider.short_lived == {}  # the short-lived token was the one exchanged
    # The long-lived token is what a refresh presents: it is in both slots, with its expiry.
    access = decrypted(fernet_key, stored["access_token_ciphertext"])
    assert access in provider.access_tokens
    assert decrypted(fernet_key, stored["refresh_token_ciphertext"]) == access
    expires = _when(stored["access_expires_at"])
    assert expires == _when(stored["refresh_expires_at"])
    assert before + timedelta(days=59) < expires <= datetime.now(UTC) + timedelta(days=61)
    assert _when(stored["tokens_issued_at"]) >= before.replace(microsecond=0) - timedelta(seconds=1)
    assert (stored["label"], stored["status"]) == ("Shop window", "active")
    assert second.query["access_token"] not in result.stdout + result.stderr
    assert provider.client_secret not in result.stdout + result.stderr

    # Connected moments ago: under Instagram's 24 hours, so no run presents it yet.
    run = cli("refresh", "--json", env=env)
    assert run.exit_code == 0, run.stderr
    assert [call.path for call in provider.received] == ["/oauth/access_token", "/access_token"]


def test_instagram_connect_whose_long_lived_exchange_fails_stores_nothing_and_says_so(
    cli: Cli, instagram: tuple[Provider, dict[str, str]], engine: Engine
) -> None:
    provider, env = instagram
    code = provider.issue_code(REDIRECT)
    # The first answer gives a short-lived token the stand-in never issued: the second call
    # is refused with Meta's 190, as a short-lived token that expired would be.
    provider.scripted.append(
        (200, {"data": [{"access_token": "IGshort-never-issued", "user_id": 42}]})
    )

    result = _connect(cli, env, "ig", code)

    assert result.exit_code == 1, result.stderr
    assert (
        "the code was exchanged, but exchanging its short-lived token for a long-lived one "
        "failed: 190 (HTTP 400): Invalid OAuth access token - Cannot parse access token"
    ) in result.stderr
    assert "nothing was stored" in result.stderr
    assert "ask the user to authorize again" in result.stderr
    assert "IGshort-never-issued" not in result.stdout + result.stderr
    with pytest.raises(Exception, match="No row was found"):
        row(engine, "ig", "42")


def test_instagram_connect_is_refused_before_the_code_is_spent_when_it_cannot_succeed(
    cli: Cli, instagram: tuple[Provider, dict[str, str]], tmp_path: Path
) -> None:
    provider, env = instagram
    code = provider.issue_code(REDIRECT)

    named = _connect(cli, env, "ig", code, "--user-id", "42")
    no_secret = _connect(cli, {**env, "SECRET_OF_APP": ""}, "ig", code)

    assert named.exit_code == 2
    assert "--user-id: Instagram's answer names the user; leave it out" in named.stderr
    assert no_secret.exit_code == 3
    assert "the variable SECRET_OF_APP" in no_secret.stderr
    assert "credentials are needed to connect an account" in no_secret.stderr
    assert provider.received == []
    assert code in provider.codes


def test_the_library_connects_an_instagram_account(
    env: dict[str, str], instagram: tuple[Provider, dict[str, str]], engine: Engine
) -> None:
    provider, app_env = instagram
    code = provider.issue_code(REDIRECT)

    with TokenStore.from_env({**env, **app_env}) as store:
        connected = store.connect(code, redirect_uri=REDIRECT, app="ig")
        token = store.access_token(app="ig", user_id=INSTAGRAM_USER)

    assert (connected.open_id, connected.created) == (INSTAGRAM_USER, True)
    assert row(engine, "ig", INSTAGRAM_USER)["id"] == connected.account_id
    assert token.token in provider.access_tokens


def test_tiktok_shop_connect_exchanges_the_auth_code_with_a_get(
    cli: Cli, shop: tuple[Provider, dict[str, str]], engine: Engine, fernet_key: str
) -> None:
    provider, env = shop
    code = provider.issue_code(REDIRECT)

    result = _connect(cli, env, "shop", code, "--json")

    assert result.exit_code == 0, result.stderr
    assert result.json()["open_id"] == "7494shop-open-id"
    [call] = provider.received
    assert (call.method, call.path, call.form) == ("GET", "/api/v2/token/get", {})
    assert call.query == {
        "app_key": provider.client_id,
        "app_secret": provider.client_secret,
        "auth_code": code,
        "grant_type": "authorized_code",
    }
    stored = row(engine, "shop", "7494shop-open-id")
    assert decrypted(fernet_key, stored["refresh_token_ciphertext"]) in provider.refresh_tokens
    assert decrypted(fernet_key, stored["access_token_ciphertext"]) in provider.access_tokens
    assert stored["scope"] == "seller.authorization.info,seller.shop.info"
    assert provider.client_secret not in result.stdout + result.stderr


def test_tiktok_shop_has_no_consent_page_of_ours_and_a_bad_code_stores_nothing(
    cli: Cli, shop: tuple[Provider, dict[str, str]], engine: Engine
) -> None:
    provider, env = shop

    page = cli("accounts", "authorize-url", "--app", "shop", "--redirect-uri", REDIRECT, env=env)
    refused = _connect(cli, env, "shop", "never-issued-code")

    assert page.exit_code == 2
    assert "the tiktok-shop profile names no consent page" in page.stderr
    assert "`tokenrefresh accounts connect --app shop`" in page.stderr
    assert refused.exit_code == 1  # an unrecognised code: no verdict on it
    assert (
        "the code exchange failed: 105003 (HTTP 200): auth code is invalid or expired; "
        "nothing was stored"
    ) in refused.stderr
    assert [call.path for call in provider.received] == ["/api/v2/token/get"]


def test_instagram_long_lived_failure_that_echoes_the_code_and_tokens_shows_none_of_them(
    cli: Cli, instagram: tuple[Provider, dict[str, str]], engine: Engine
) -> None:
    provider, env = instagram
    code = provider.issue_code(REDIRECT)
    short = "IGshort-echoed-back-0123456789"
    provider.scripted += [
        (200, {"data": [{"access_token": short, "user_id": 42}]}),
        (
            400,
            graph_error(190, f"Invalid token {short} for code {code} ({provider.client_secret})"),
        ),
    ]

    result = _connect(cli, env, "ig", code)

    assert result.exit_code == 1, result.stderr
    assert "exchanging its short-lived token for a long-lived one failed: 190" in result.stderr
    for secret in (code, short, provider.client_secret):
        assert secret not in result.stdout + result.stderr
    with pytest.raises(Exception, match="No row was found"):
        row(engine, "ig", "42")
