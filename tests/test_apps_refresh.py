"""A run over several apps (issue 20, parts 2 and 4): each account is presented to its own
app's provider and to no other; `--app` narrows a run to one app; an app whose credentials
its provider refuses stops only its own part (its accounts left as they are, exit 3 naming
it); an app the configuration no longer names is never refreshed or expired, and is named
by the run and by `status`; Instagram's token is refreshed with itself, once old enough.

Each provider is its own stand-in (tests/standin_providers.py, written from its documents);
TikTok is the usual stand-in. Both databases.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, text

from apps_setup import (
    AddXAccounts,
    Apps,
    StoreAccount,
    app_config,
    decrypted,
    google_tokens,
    instagram_token,
    presented_to,
    row,
    x_tokens,
)
from conftest import Cli
from helpers import AddAccounts, counts
from standin import TikTokStandIn
from standin_providers import serving
from tokenrefresh import TokenStore


def test_one_run_refreshes_each_account_at_its_own_provider_and_no_other(
    cli: Cli,
    apps: Apps,
    standin: TikTokStandIn,
    add_accounts: AddAccounts,
    add_x_accounts: AddXAccounts,
    store_account: StoreAccount,
    engine: Engine,
    fernet_key: str,
) -> None:
    tiktok = add_accounts(2)  # imported before the file existed: app `tiktok`
    x, google = apps.providers["x"], apps.providers["google"]
    x_pairs = add_x_accounts(2)
    g_access, g_refresh = google_tokens(google)
    store_account("google", "g-user", access=g_access, refresh=g_refresh)

    result = cli("refresh", "--window", "3h", "--json", env=apps.env)

    assert result.exit_code == 0, result.stderr
    assert result.json()["counts"] == counts(refreshed=5)
    assert "unconfigured_apps" not in result.json()  # only when there are any
    # TikTok saw only TikTok's tokens, X only X's, Google only Google's.
    assert sorted(standin.presented()) == sorted(tokens.refresh_token for tokens in tiktok)
    assert sorted(presented_to(x)) == sorted(refresh for _, refresh in x_pairs)
    assert presented_to(google) == [g_refresh]
    for index, (_, old_refresh) in enumerate(x_pairs):
        stored = row(engine, "x", f"x-user-{index}")
        new_refresh = decrypted(fernet_key, stored["refresh_token_ciphertext"])
        assert new_refresh in x.refresh_tokens
        assert new_refresh != old_refresh
        assert decrypted(fernet_key, stored["access_token_ciphertext"]) in x.access_tokens
    listed = cli("accounts", "list", env={**apps.env, "COLUMNS": "200"}).stdout.splitlines()
    assert listed[1].split()[:3] == ["app", "id", "open_id"]  # accounts of several apps
    apps_listed = sorted(line.split()[0] for line in listed[2:] if line.strip())
    assert apps_listed == ["google", "tiktok", "tiktok", "x", "x"]
    google_row = row(engine, "google", "g-user")
    # Google does not rotate: the stored refresh token stays; the new access token is kept.
    assert decrypted(fernet_key, google_row["refresh_token_ciphertext"]) == g_refresh
    assert decrypted(fernet_key, google_row["access_token_ciphertext"]) != g_access


def test_app_narrows_the_run_to_that_apps_accounts(
    cli: Cli,
    apps: Apps,
    standin: TikTokStandIn,
    add_accounts: AddAccounts,
    store_account: StoreAccount,
) -> None:
    add_accounts(1)
    x = apps.providers["x"]
    [(access, refresh)] = x_tokens(x, 1)
    store_account("x", "x-user", access=access, refresh=refresh)

    result = cli("refresh", "--app", "x", "--json", env=apps.env)

    assert result.exit_code == 0, result.stderr
    assert result.json()["counts"] == counts(refreshed=1)
    assert presented_to(x) == [refresh]
    assert not standin.presented()  # the TikTok account was not part of this run
    unknown = cli("refresh", "--app", "nope", env=apps.env)
    assert unknown.exit_code == 2
    assert "no app 'nope' is configured (apps: google, instagram, tiktok, x)" in unknown.stderr


def test_an_app_whose_credentials_are_refused_stops_only_its_own_part(
    cli: Cli,
    apps: Apps,
    standin: TikTokStandIn,
    add_accounts: AddAccounts,
    add_x_accounts: AddXAccounts,
    engine: Engine,
) -> None:
    tiktok = add_accounts(2)
    x = apps.providers["x"]
    add_x_accounts(3)
    before = {index: row(engine, "x", f"x-user-{index}") for index in range(3)}

    wrong = {**apps.env, "X_SECRET": "a-wrong-secret-0000"}
    result = cli("refresh", "--window", "3h", "--json", env=wrong)

    assert result.exit_code == 3, result.stderr
    document = result.json()
    assert document["counts"]["refreshed"] == 2  # TikTok's part went on
    assert document["stopped"]["reason"] == "client_rejected"
    assert document["stopped"]["message"].startswith("app x: X rejected the app's credentials")
    assert "app x: X rejected the app's credentials" in result.stderr
    assert "a-wrong-secret-0000" not in result.stdout + result.stderr
    assert sorted(standin.presented()) == sorted(tokens.refresh_token for tokens in tiktok)
    for index in range(3):  # X's accounts as they were: never expired, tokens kept
        after = row(engine, "x", f"x-user-{index}")
        assert after["status"] == "active"
        assert after["refresh_token_ciphertext"] == before[index]["refresh_token_ciphertext"]
        assert after["token_generation"] == before[index]["token_generation"]
    # The first refusal stopped X's part: at most the calls already in flight were made.
    assert 1 <= len(x.received) <= 3


def test_an_app_no_longer_configured_is_neither_refreshed_nor_expired_and_is_named(
    cli: Cli, apps: Apps, store_account: StoreAccount, engine: Engine, tmp_path: Path
) -> None:
    x = apps.providers["x"]
    [(access, refresh)] = x_tokens(x, 1)
    store_account("x-old", "due-user", access=access, refresh=refresh)
    store_account(
        "x-old",
        "past-expiry-user",
        access="a" * 20,
        refresh="r" * 20,
        access_in=timedelta(days=-40),
        refresh_in=timedelta(days=-1),
    )

    run = cli("refresh", "--json", env=apps.env)
    dry = cli("refresh", "--dry-run", "--json", env=apps.env)
    text_run = cli("refresh", env=apps.env)
    dry_cleanup = cli("cleanup", "--dry-run", "--json", env=apps.env)
    cleaned = cli("cleanup", "--json", env=apps.env)
    status = cli("status", "--json", env=apps.env)
    check = cli("status", "--check", env=apps.env)
    named = cli(
        "refresh", "--account-id", str(row(engine, "x-old", "due-user")["id"]), env=apps.env
    )

    assert run.exit_code == 0, run.stderr
    assert run.json()["counts"] == counts()
    assert run.json()["unconfigured_apps"] == {"x-old": 2}
    assert dry.json()["unconfigured_apps"] == {"x-old": 2}
    assert "Not refreshed: 2 active account(s) of app x-old" in text_run.stdout
    assert cleaned.exit_code == 0
    assert cleaned.json()["expired"] == []
    # Neither is counted as tokens to erase: no cleanup expires an unconfigured app's account.
    assert dry_cleanup.json()["counts"]["tokens_erased"] == 0
    assert cleaned.json()["counts"]["tokens_erased"] == 0
    assert status.json()["apps"]["x-old"] == {"accounts": 2, "configured": False}
    assert status.json()["unconfigured_apps"] == {"x-old": 2}
    assert check.exit_code == 1
    assert "2 active account(s) of app 'x-old' are not refreshed" in check.stdout
    assert named.exit_code == 3
    assert "belongs to app 'x-old', which" in named.stderr
    assert x.received == []  # nothing was ever presented
    for user in ("due-user", "past-expiry-user"):
        assert row(engine, "x-old", user)["status"] == "active"


def test_instagram_presents_the_access_token_once_it_is_old_enough(
    cli: Cli, apps: Apps, store_account: StoreAccount, engine: Engine, fernet_key: str
) -> None:
    instagram = apps.providers["instagram"]
    old = instagram_token(instagram, timedelta(days=50))
    young = instagram_token(instagram, timedelta(hours=2))
    # Both inside Instagram's 14-day window; the young one is under its 24-hour minimum age.
    for user, token, issued in (
        ("old", old, timedelta(days=50)),
        ("young", young, timedelta(hours=2)),
    ):
        store_account(
            "instagram",
            user,
            access=token,
            refresh=token,
            access_in=timedelta(days=10),
            refresh_in=timedelta(days=10),
            issued=issued,
        )

    result = cli("refresh", "--app", "instagram", "--json", env=apps.env)

    assert result.exit_code == 0, result.stderr
    assert result.json()["counts"] == counts(refreshed=1)
    assert presented_to(instagram) == [old]
    assert all(request.method == "GET" for request in instagram.received)
    refreshed = row(engine, "instagram", "old")
    new = decrypted(fernet_key, refreshed["access_token_ciphertext"])
    assert new != old
    assert new in instagram.access_tokens
    # The next refresh presents the new token: it is in the refresh slot too, with its expiry.
    assert decrypted(fernet_key, refreshed["refresh_token_ciphertext"]) == new
    assert refreshed["refresh_expires_at"] == refreshed["access_expires_at"]
    assert row(engine, "instagram", "young")["token_generation"] == 1


def test_on_demand_refreshes_at_the_accounts_own_provider(
    cli: Cli, apps: Apps, standin: TikTokStandIn, store_account: StoreAccount, engine: Engine
) -> None:
    google = apps.providers["google"]
    access, refresh = google_tokens(google)
    store_account(
        "google", "g-user", access=access, refresh=refresh, access_in=timedelta(minutes=1)
    )
    store_account(
        "gone-app", "lost-user", access="a" * 20, refresh="r" * 20, access_in=timedelta(minutes=1)
    )
    gone_id = row(engine, "gone-app", "lost-user")["id"]

    by_user = cli("accounts", "token", "--app", "google", "--open-id", "g-user", env=apps.env)
    stale = cli("accounts", "token", str(gone_id), env=apps.env)

    assert by_user.exit_code == 0, by_user.stderr
    assert by_user.stdout.strip() in google.access_tokens
    assert by_user.stdout.strip() != access
    assert presented_to(google) == [refresh]
    assert not standin.presented()
    assert stale.exit_code == 3
    assert "belongs to app 'gone-app'" in stale.stderr


def test_one_providers_outage_opens_its_own_breaker_and_the_other_apps_go_on(
    cli: Cli, apps: Apps, add_x_accounts: AddXAccounts, store_account: StoreAccount, engine: Engine
) -> None:
    x, google = apps.providers["x"], apps.providers["google"]
    add_x_accounts(6)
    x.scripted = [(503, {"error": "temporarily_unavailable"})] * 100
    google_pairs = [google_tokens(google) for _ in range(3)]
    for index, (access, refresh) in enumerate(google_pairs):
        store_account("google", f"g-user-{index}", access=access, refresh=refresh)

    result = cli("refresh", "--json", env=apps.env)

    document = result.json()
    assert result.exit_code == 1, result.stderr
    assert document["stopped"]["reason"] == "circuit_breaker"
    assert document["stopped"]["message"].startswith("app x: X is failing: ")
    assert "calls to X failed" in document["stopped"]["message"]
    assert document["counts"]["refreshed"] == 3  # Google's part was not stopped
    assert len(google.access_tokens) == 6  # the 3 of consent and the 3 of the refreshes
    for index in range(3):  # each Google account stored a new pair
        assert row(engine, "google", f"g-user-{index}")["token_generation"] == 2
    for index in range(6):  # X's accounts failed, none marked for its user
        assert row(engine, "x", f"x-user-{index}")["status"] == "active"


def test_events_and_metrics_say_which_app(
    cli: Cli,
    apps: Apps,
    add_accounts: AddAccounts,
    standin: TikTokStandIn,
    store_account: StoreAccount,
    engine: Engine,
    tmp_path: Path,
) -> None:
    add_accounts(1, label="Shop Berlin")
    standin.revoke("user0")
    google = apps.providers["google"]
    store_account("google", "g-user", access="ya29-old", refresh="1//revoked-long-ago")
    x = apps.providers["x"]
    [(access, refresh)] = x_tokens(x, 1)
    store_account("x-old", "left-behind", access=access, refresh=refresh)
    metrics = tmp_path / "metrics.prom"

    result = cli("refresh", "--window", "3h", "--metrics-file", str(metrics), env=apps.env)

    assert result.exit_code == 1, result.stderr
    with engine.connect() as connection:
        payloads = [
            json.loads(payload)
            for (payload,) in connection.execute(
                text("SELECT payload FROM outbox WHERE type = 'account.expired' ORDER BY id")
            )
        ]
    by_user = {payload["data"]["open_id"]: payload["data"] for payload in payloads}
    # The app `tiktok` keeps the event shape it always had; any other app's events say
    # which app, and which provider, the account belongs to.
    assert set(by_user["user0"]) == {"account_id", "open_id", "label", "reason"}
    assert by_user["g-user"]["app"] == "google"
    assert by_user["g-user"]["provider"] == "google"
    assert by_user["g-user"]["reason"].startswith("Google rejected the refresh token: ")
    assert presented_to(google) == ["1//revoked-long-ago"]
    exposition = metrics.read_text()
    assert 'tokenrefresh_app_accounts{app="google",status="expired"} 1.0' in exposition
    assert 'tokenrefresh_app_accounts{app="tiktok",status="expired"} 1.0' in exposition
    assert 'tokenrefresh_app_accounts{app="x-old",status="active"} 1.0' in exposition
    assert 'tokenrefresh_unconfigured_app_accounts{app="x-old"} 1.0' in exposition
    assert 'tokenrefresh_accounts{status="expired"} 2.0' in exposition  # as it always was


def test_a_tiktok_shop_account_imported_as_its_answer_is_refreshed_with_a_get(
    cli: Cli, engine: Engine, fernet_key: str, tmp_path: Path
) -> None:
    with serving("tiktok-shop") as (shop, base_url):
        env = app_config(tmp_path / "shop.toml", "shop", shop, base_url, profile="tiktok-shop")
        refresh = shop.new_token("ROW_refresh")
        shop.refresh_tokens.add(refresh)
        now = int(time.time())
        line = {  # the answer's `data`, as the import takes it
            "open_id": "7494shop-open-id",
            "access_token": "ROW_access-imported",
            "access_token_expire_in": now + 600,
            "refresh_token": refresh,
            "refresh_token_expire_in": now + 30 * 86400,
            "seller_name": "Stand-in Shop",
            "granted_scopes": ["seller.authorization.info"],
        }
        imported = cli("accounts", "import", "-", input=json.dumps(line) + "\n", env=env)
        result = cli("refresh", "--json", env=env)

    assert imported.exit_code == 0, imported.stderr
    assert result.exit_code == 0, result.stderr
    assert result.json()["counts"] == counts(refreshed=1)
    [call] = shop.received
    assert (call.method, call.path) == ("GET", "/api/v2/token/refresh")
    assert call.query["refresh_token"] == refresh
    stored = row(engine, "shop", "7494shop-open-id")
    new_refresh = decrypted(fernet_key, stored["refresh_token_ciphertext"])
    assert new_refresh in shop.refresh_tokens
    assert new_refresh != refresh
    assert stored["status"] == "active"


def test_one_tiktok_app_keeps_the_documents_and_series_it_had(
    cli: Cli, add_accounts: AddAccounts, tmp_path: Path
) -> None:
    add_accounts(1)
    metrics = tmp_path / "metrics.prom"

    run = cli("refresh", "--window", "3h", "--json", "--metrics-file", str(metrics))
    dry = cli("refresh", "--dry-run", "--json")
    status = cli("status", "--json")

    assert run.exit_code == 0, run.stderr
    assert "unconfigured_apps" not in run.json()
    assert "unconfigured_apps" not in dry.json()
    assert not {"apps", "unconfigured_apps", "configuration_error"} & set(status.json())
    assert "tokenrefresh_app_accounts" not in metrics.read_text()
    assert 'tokenrefresh_accounts{status="active"} 1.0' in metrics.read_text()


def test_a_user_id_alone_is_of_the_only_configured_app_in_every_lookup(
    cli: Cli, env: dict[str, str], store_account: StoreAccount, engine: Engine, tmp_path: Path
) -> None:
    with serving("x") as (x, base_url):
        only_x = app_config(tmp_path / "x.toml", "x-main", x, base_url, profile="x")
        [(access, refresh)] = x_tokens(x, 1)
        store_account(
            "x-main", "1500000001", access=access, refresh=refresh, access_in=timedelta(hours=1)
        )
        store_account("tiktok", "1500000001", access="act.other", refresh="rft.other")
        expected = row(engine, "x-main", "1500000001")["id"]

        shown = cli("accounts", "show", "--open-id", "1500000001", "--json", env=only_x)
        token = cli("accounts", "token", "--open-id", "1500000001", env=only_x)
        with TokenStore.from_env({**env, **only_x}) as store:
            found = store.account(open_id="1500000001")
            read = store.access_token(user_id="1500000001")

    assert shown.exit_code == 0, shown.stderr
    assert shown.json()["account"]["id"] == expected
    assert shown.json()["account"]["app"] == "x-main"
    assert token.stdout == f"{access}\n"
    assert (found.id, found.app) == (expected, "x-main")
    assert (read.account_id, read.token) == (expected, access)
