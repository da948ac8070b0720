"""TIKTOK_AUTHORIZE_URL points `accounts authorize-url` at another consent page, checked as
TIKTOK_API_BASE_URL is; and a whole local connect, as the README's "Try it locally" does:
authorize-url (PKCE) -> the stand-in's consent page -> connect -> list -> revoke."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import Engine

from conftest import Cli
from helpers import account, assert_no_secret, assert_only_a_refused_run_was_recorded, snapshot
from standin import AUTHORIZE_PATH, TikTokStandIn
from tokenrefresh.base.settings import DEFAULT_AUTHORIZE_URL, Settings

CALLBACK = "http://127.0.0.1:8766/callback"
VAR = "TIKTOK_AUTHORIZE_URL"

BAD_AUTHORIZE_URLS = {
    "ftp://127.0.0.1/auth": f"{VAR} must be an https:// URL with a host name",
    "http://consent.example/auth": f"{VAR}: plain http:// is only allowed for a loopback "
    "host (127.0.0.1, ::1, localhost), not 'consent.example'; use https://",
    "https://[::1": f"{VAR} is not a valid URL: an IPv6 address stands in brackets, as in "
    "http://[::1]:8080",
    "https://www.tiktok.com:99999/v2/auth/authorize/": f"{VAR}: the port must be a number "
    "from 1 to 65535",
    "https://me:hunter2@www.tiktok.com/": f"{VAR} must not carry credentials, a query or a "
    "fragment",
    "https://www.tiktok.com/v2/auth/authorize/?x=1": f"{VAR} must not carry credentials, a "
    "query or a fragment",
}


def authorize_url(cli: Cli, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = cli("accounts", "authorize-url", "--redirect-uri", CALLBACK, "--json", *args, env=env)
    assert result.exit_code == 0, result.stderr
    document: dict[str, Any] = result.json()
    return document


def test_by_default_the_consent_page_is_tiktoks(cli: Cli) -> None:
    url = authorize_url(cli)["url"]
    assert url.startswith("https://www.tiktok.com/v2/auth/authorize/?client_key=")
    assert Settings.from_env({}).authorize_url == DEFAULT_AUTHORIZE_URL


def test_tiktok_authorize_url_names_another_page_kept_as_given(
    cli: Cli, standin: TikTokStandIn
) -> None:
    page = standin.base_url + AUTHORIZE_PATH
    url = authorize_url(cli, env={VAR: page})["url"]
    assert url.startswith(page + "?client_key=")  # its trailing slash kept
    assert urlsplit(url).path == AUTHORIZE_PATH


@pytest.mark.parametrize("value", sorted(BAD_AUTHORIZE_URLS))
def test_a_malformed_authorize_url_is_exit_3_naming_it(
    cli: Cli, standin: TikTokStandIn, value: str
) -> None:
    result = cli("accounts", "authorize-url", "--redirect-uri", CALLBACK, env={VAR: value})
    assert result.exit_code == 3
    assert result.stderr == f"error: {BAD_AUTHORIZE_URLS[value]}\n"
    assert result.stdout == ""
    assert "hunter2" not in result.stderr


def test_a_malformed_authorize_url_stops_a_run_before_anything_is_sent(
    cli: Cli, standin: TikTokStandIn, add_accounts: Any, engine: Engine
) -> None:
    add_accounts(2)
    before = snapshot(engine)
    result = cli("refresh", "--window", "3h", env={VAR: "http://consent.example/auth"})
    assert result.exit_code == 3
    assert result.stderr.startswith(f"error: {VAR}: plain http:// is only allowed")
    assert standin.received == []
    assert_only_a_refused_run_was_recorded(engine, before, result.stderr)


def test_connect_and_revoke_through_the_standins_consent_page(
    cli: Cli, standin: TikTokStandIn, engine: Engine
) -> None:
    env = {VAR: standin.base_url + AUTHORIZE_PATH}
    consent = authorize_url(cli, "--pkce", "--scope", "video.publish", env=env)
    answer = requests.get(
        consent["url"] + "&open_id=creator-0042", allow_redirects=False, timeout=5
    )
    assert answer.status_code == 302, answer.text
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert query["state"] == [consent["state"]]
    code = answer.headers["Location"].split("code=")[1].split("&")[0]  # still %-encoded
    given = f"{code}\n{consent['code_verifier']}\n"
    connected = cli("accounts", "connect", "--redirect-uri", CALLBACK, input=given)
    assert connected.exit_code == 0, connected.stderr
    assert connected.stdout == "Connected new account 1 (creator-0042).\n"
    assert account(engine, "creator-0042")["scope"] == "video.publish"
    again = cli("accounts", "connect", "--redirect-uri", CALLBACK, input=given)
    assert again.exit_code == 2
    assert "Authorization code has already been used." in again.stderr

    revoked = cli("accounts", "revoke", "creator-0042", "--yes")
    assert revoked.exit_code == 0, revoked.stderr
    assert revoked.stdout == "Revoked account 1 (creator-0042) at TikTok; tokens erased.\n"
    assert account(engine, "creator-0042")["status"] == "revoked"
    assert standin.revoke_count("creator-0042") == 1
    assert_no_secret(
        [connected, again, revoked],
        *standin.issued_tokens,
        *standin.issued_codes,
        consent["code_verifier"],
    )
