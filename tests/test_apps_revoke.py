"""Revoking an account of any app (issue 20): its token goes to its own app's revoke
endpoint, with that app's credentials, and to no other; a provider without one (Instagram)
is not called and the tokens are erased here; an app the configuration no longer names is
refused, and nothing changes. The CLI and the library alike, on both databases."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine

from apps_setup import Apps, StoreAccount, app_config, instagram_token, presented_to, row, x_tokens
from conftest import Cli
from standin import TikTokStandIn
from standin_providers import serving
from tokenrefresh import TokenStore


def test_an_x_account_is_revoked_at_x_with_the_apps_basic_credentials(
    cli: Cli, apps: Apps, standin: TikTokStandIn, store_account: StoreAccount, engine: Engine
) -> None:
    x = apps.providers["x"]
    [(access, refresh)] = x_tokens(x, 1)
    store_account("x", "x-user", access=access, refresh=refresh, access_in=timedelta(hours=1))
    account_id = row(engine, "x", "x-user")["id"]

    result = cli("accounts", "revoke", str(account_id), "--yes", env=apps.env)

    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"Revoked account {account_id} (x-user) at X; tokens erased.\n"
    [call] = x.received
    assert call.path == "/2/oauth2/revoke"
    assert call.form == {"token": access, "token_type_hint": "access_token"}
    assert x.basic_credentials(call) == (x.client_id, x.client_secret)
    assert access not in x.access_tokens  # the stand-in revoked it
    assert not standin.presented()  # never shown to TikTok
    stored = row(engine, "x", "x-user")
    assert stored["status"] == "revoked"
    assert stored["access_token_ciphertext"] is None
    assert stored["refresh_token_ciphertext"] is None


def test_an_instagram_account_is_only_forgotten_here(
    cli: Cli, apps: Apps, store_account: StoreAccount, engine: Engine
) -> None:
    instagram = apps.providers["instagram"]
    token = instagram_token(instagram, timedelta(days=3))
    store_account(
        "instagram",
        "ig-user",
        access=token,
        refresh=token,
        access_in=timedelta(days=40),
        refresh_in=timedelta(days=40),
    )
    account_id = row(engine, "instagram", "ig-user")["id"]

    result = cli("accounts", "revoke", str(account_id), "--yes", env=apps.env)

    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        f"Revoked account {account_id} (ig-user) here (Instagram has no revoke endpoint: its "
        "user removes the app there); tokens erased.\n"
    )
    assert instagram.received == []
    assert row(engine, "instagram", "ig-user")["status"] == "revoked"


def test_an_account_of_an_app_no_longer_configured_is_not_revoked(
    cli: Cli, apps: Apps, standin: TikTokStandIn, store_account: StoreAccount, engine: Engine
) -> None:
    store_account("gone", "left-user", access="a" * 24, refresh="r" * 24)
    before = row(engine, "gone", "left-user")

    result = cli("accounts", "revoke", str(before["id"]), "--yes", env=apps.env)

    assert result.exit_code == 3
    assert "belongs to app 'gone', which" in result.stderr
    assert "nothing was changed" in result.stderr
    assert row(engine, "gone", "left-user") == before
    assert not standin.presented()


def test_the_library_revokes_at_the_accounts_own_app(
    env: dict[str, str], apps: Apps, store_account: StoreAccount, engine: Engine
) -> None:
    google = apps.providers["google"]
    access = google.new_token("ya29")
    google.access_tokens[access] = 0.0
    store_account("google", "g-user", access=access, refresh="1//g", access_in=timedelta(hours=1))
    account_id = row(engine, "google", "g-user")["id"]

    with TokenStore.from_env({**env, **apps.env}) as store:
        revoked = store.revoke(account_id=account_id)

    assert (revoked.account_id, revoked.at_provider, revoked.provider) == (
        account_id,
        True,
        "Google",
    )
    assert presented_to(google) == [access]
    assert [call.path for call in google.received] == ["/revoke"]
    assert row(engine, "google", "g-user")["status"] == "revoked"


def test_a_profile_that_revokes_the_refresh_token_presents_the_stored_one(
    cli: Cli, store_account: StoreAccount, engine: Engine, tmp_path: Path
) -> None:
    with serving("google") as (google, base_url):
        profile = '[providers.idp]\nextends = "google"\n[providers.idp.revoke]\n'
        profile += 'presents = "refresh_token"\n'
        env = app_config(
            tmp_path / "idp.toml", "idp", google, base_url, profile="idp", extra=profile
        )
        refresh = google.new_token("1//idp")
        google.refresh_tokens.add(refresh)
        store_account("idp", "idp-user", access="ya29-idp-access", refresh=refresh)
        account_id = row(engine, "idp", "idp-user")["id"]

        result = cli("accounts", "revoke", str(account_id), "--yes", env=env)

    assert result.exit_code == 0, result.stderr
    # A profile that extends google and names no label of its own is still called Google.
    assert result.stdout == f"Revoked account {account_id} (idp-user) at Google; tokens erased.\n"
    [call] = google.received
    assert (call.path, call.form["token"]) == ("/revoke", refresh)
    assert refresh not in google.refresh_tokens
    assert row(engine, "idp", "idp-user")["status"] == "revoked"
