"""Connecting an account of an app of the configuration file (issue 20): `authorize-url
--app` gives that app's provider's consent page (PKCE where it is required), `connect --app`
exchanges the code there with the app's credentials and stores the account in the app. What
an operator typed is checked before a code is spent; a provider `connect` cannot serve yet is
refused by name. The stand-ins' code exchanges are written from X's and Google's documents.
Both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import Engine

from apps_setup import Apps, decrypted, row
from conftest import Cli
from standin import TikTokStandIn
from tokenrefresh import TokenStore
from tokenrefresh.errors import InvalidArgument

REDIRECT = "https://app.example/callback"


def consent(cli: Cli, apps: Apps, app: str, *extra: str) -> dict[str, str | None]:
    result = cli(
        "accounts", "authorize-url", "--app", app, "--redirect-uri", REDIRECT, "--json", *extra,
        env=apps.env,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    document: dict[str, str | None] = result.json()
    return document


def test_x_consent_asks_for_pkce_and_the_code_is_exchanged_at_x(
    cli: Cli, apps: Apps, standin: TikTokStandIn, engine: Engine, fernet_key: str
) -> None:
    x = apps.providers["x"]
    page = consent(cli, apps, "x")
    url = str(page["url"])
    query = {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}
    assert urlsplit(url).path == "/i/oauth2/authorize"
    assert query == {
        "client_id": x.client_id,
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "state": page["state"],
        "scope": "tweet.read users.read offline.access",
        "code_challenge": query["code_challenge"],
        "code_challenge_method": "S256",
    }
    assert page["code_verifier"]  # X requires PKCE: a verifier without --pkce
    code = x.issue_code(REDIRECT, query["code_challenge"])

    result = cli(
        "accounts", "connect", "--app", "x", "--redirect-uri", REDIRECT, "--user-id",
        "1500000001", "--label", "Main", input=f"{code}\n{page['code_verifier']}\n", env=apps.env,
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    stored = row(engine, "x", "1500000001")
    assert result.stdout == f"Connected new account {stored['id']} (1500000001).\n"
    [call] = x.received
    assert x.basic_credentials(call) == (x.client_id, x.client_secret)
    assert call.form["grant_type"] == "authorization_code"
    assert call.form["code_verifier"] == page["code_verifier"]
    assert decrypted(fernet_key, stored["refresh_token_ciphertext"]) in x.refresh_tokens
    assert decrypted(fernet_key, stored["access_token_ciphertext"]) in x.access_tokens
    assert (stored["label"], stored["status"]) == ("Main", "active")
    assert not standin.presented()


def test_google_connect_keeps_the_consents_refresh_token_for_its_longest_life(
    cli: Cli, apps: Apps, engine: Engine, fernet_key: str
) -> None:
    google = apps.providers["google"]
    page = consent(cli, apps, "google")
    query = parse_qs(urlsplit(str(page["url"])).query)
    assert query["access_type"] == ["offline"]
    assert query["prompt"] == ["consent"]
    assert "code_challenge" not in query  # optional for Google: only with --pkce
    code = google.issue_code(REDIRECT)
    before = datetime.now(UTC)

    result = cli(
        "accounts", "connect", "--app", "google", "--redirect-uri", REDIRECT,
        "--user-id", "110248495921238986420", "--json", input=code, env=apps.env,
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert result.json()["open_id"] == "110248495921238986420"
    stored = row(engine, "google", "110248495921238986420")
    assert decrypted(fernet_key, stored["refresh_token_ciphertext"]) in google.refresh_tokens
    # Google's answer states no refresh expiry: the profile's longest (366 days) is assumed.
    stored_expiry = stored["refresh_expires_at"]  # a datetime, or SQLite's text of one
    expires = (
        stored_expiry
        if isinstance(stored_expiry, datetime)
        else datetime.fromisoformat(str(stored_expiry))
    ).replace(tzinfo=UTC)
    assert before + timedelta(days=366) <= expires <= datetime.now(UTC) + timedelta(days=366)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ("--app", "x"),
            "X's answer to the code does not say whose account it is: give --user-id",
            id="x-without-user-id",
        ),
        pytest.param(
            ("--app", "x", "--user-id", "has space"),
            "--user-id: it holds a space",
            id="bad-user-id",
        ),
        pytest.param(
            ("--app", "tiktok", "--user-id", "u1"),
            "--user-id: TikTok's answer names the user; leave it out",
            id="tiktok-names-its-user",
        ),
        pytest.param(
            ("--app", "instagram"),
            "app 'instagram' has no client_id",  # its refresh needs none, its exchange does
            id="instagram-without-client-id",
        ),
        pytest.param(("--app", "nope"), "no app 'nope' is configured", id="unknown-app"),
    ],
)
def test_what_the_operator_typed_is_refused_before_the_code_is_spent(
    cli: Cli, apps: Apps, engine: Engine, args: tuple[str, ...], message: str
) -> None:
    x = apps.providers["x"]
    code = x.issue_code(REDIRECT)

    result = cli("accounts", "connect", "--redirect-uri", REDIRECT, *args, input=code, env=apps.env)

    assert result.exit_code == 2
    assert message in result.stderr
    assert code in x.codes  # not spent
    assert x.received == []


def test_a_code_the_provider_does_not_accept_stores_nothing(
    cli: Cli, apps: Apps, engine: Engine
) -> None:
    google = apps.providers["google"]
    code = google.issue_code("https://elsewhere.example/cb")  # issued for another redirect

    result = cli(
        "accounts", "connect", "--app", "google", "--redirect-uri", REDIRECT,
        "--user-id", "g-1", input=code, env=apps.env,
    )  # fmt: skip

    assert result.exit_code == 2
    assert "the authorization code was not accepted: invalid_grant" in result.stderr
    assert "nothing was stored" in result.stderr
    assert code not in result.stderr
    with pytest.raises(Exception, match="No row was found"):
        row(engine, "google", "g-1")


def test_the_library_connects_an_account_of_an_app(
    env: dict[str, str], apps: Apps, engine: Engine
) -> None:
    google = apps.providers["google"]
    code = google.issue_code(REDIRECT)

    with TokenStore.from_env({**env, **apps.env}) as store:
        with pytest.raises(InvalidArgument, match="give --user-id"):
            store.connect(code, redirect_uri=REDIRECT, app="google")
        assert code in google.codes  # refused before the code was spent
        connected = store.connect(code, redirect_uri=REDIRECT, app="google", user_id="g-42")
        token = store.access_token(app="google", user_id="g-42")

    assert (connected.open_id, connected.created) == ("g-42", True)
    assert row(engine, "google", "g-42")["id"] == connected.account_id
    assert token.token in google.access_tokens
