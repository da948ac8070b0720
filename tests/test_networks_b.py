"""Threads, Spotify, Dropbox and Xero (issue 21): each app's accounts are refreshed at its own
stand-in (tests/standin_networks_b.py, written from each provider's documents) as its
shipped profile says, through the real CLI and a real database: what each stand-in was
sent, what is stored after one refresh and after the next, the answer that means the user
must reconnect; Threads' consent, whose code gives a short-lived token exchanged for a
long-lived one. Their answers to wrong app credentials are in tests/test_networks_a.py's
table of every network. Xero's grace (a lost answer, then the old refresh token again) is
checked on the stand-in itself; the refresh service's handling of it is tested elsewhere.
Both databases.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import Engine, select, update

from apps_setup import (
    WRONG_SECRET,
    StoreAccount,
    assert_marked_for_reconnect,
    decrypted,
    network_app,
    presented_to,
    row,
)
from conftest import Cli
from helpers import counts
from standin_networks_b import Dropbox, Network, Spotify, Threads, Xero, serving
from tokenrefresh.storage.models import Account


def aged(engine: Engine, app: str, user: str, by: timedelta) -> None:
    """Move the account's stored issue and expiry times back by `by` (as if that much time
    had passed since its last refresh); the stand-in's tokens are aged alike by the test."""
    account_id = row(engine, app, user)["id"]
    with engine.begin() as connection:
        issued, expires = connection.execute(
            select(Account.tokens_issued_at, Account.access_expires_at).where(
                Account.id == account_id
            )
        ).one()
        connection.execute(
            update(Account)
            .where(Account.id == account_id)
            .values(tokens_issued_at=issued - by, access_expires_at=expires - by)
        )


def times(engine: Engine, app: str, user: str) -> dict[str, datetime]:
    """The account's stored times, as datetimes on either database."""
    columns = (Account.tokens_issued_at, Account.access_expires_at, Account.refresh_expires_at)
    with engine.connect() as connection:
        found = connection.execute(
            select(*columns).where(Account.app == app, Account.open_id == user)
        ).one()
    return dict(found._mapping)


# ----------------------------------------------------------------------------- Threads


def threads_token(threads: Network, age: timedelta) -> str:
    token = threads.new_token("THQV")
    threads.access_tokens[token] = threads.clock() - age.total_seconds()
    return token


def store_threads(store_account: StoreAccount, user: str, token: str, issued: timedelta) -> None:
    store_account(
        "threads",
        user,
        access=token,
        refresh=token,
        access_in=timedelta(days=60) - issued,
        refresh_in=timedelta(days=60) - issued,
        issued=issued,
    )


def test_threads_presents_the_access_token_once_a_day_old_and_then_the_one_it_returned(
    cli: Cli, store_account: StoreAccount, engine: Engine, fernet_key: str, tmp_path: Path
) -> None:
    with network_app("threads", tmp_path) as (threads, env):
        old = threads_token(threads, timedelta(days=50))
        young = threads_token(threads, timedelta(hours=2))
        # The old one is inside the 14-day window; the young one is 2 hours old: not due,
        # and under the 24-hour minimum age even with a window as long as its life.
        store_threads(store_account, "old", old, timedelta(days=50))
        store_threads(store_account, "young", young, timedelta(hours=2))

        first = cli("refresh", "--json", env=env)
        wide = cli("refresh", "--window", "59d", "--json", env=env)
        refreshed = row(engine, "threads", "old")
        new = decrypted(fernet_key, refreshed["access_token_ciphertext"])
        threads.access_tokens[new] -= 47 * 86400  # 47 days on, at both ends
        aged(engine, "threads", "old", timedelta(days=47))
        second = cli("refresh", "--json", env=env)

    assert first.exit_code == 0, first.stderr
    assert first.json()["counts"] == counts(refreshed=1)
    assert wide.json()["counts"] == counts()  # a fresh token is never refreshed
    assert second.json()["counts"] == counts(refreshed=1)
    newest = decrypted(fernet_key, row(engine, "threads", "old")["access_token_ciphertext"])
    assert presented_to(threads) == [old, new]
    for call in threads.received:
        assert (call.method, call.path) == ("GET", "/refresh_access_token")
        assert set(call.query) == {"grant_type", "access_token"}  # no app credentials
        assert call.query["grant_type"] == "th_refresh_token"
        assert "authorization" not in call.headers
    # The new token is also what the next refresh presents, with its 60 days.
    assert decrypted(fernet_key, refreshed["refresh_token_ciphertext"]) == new
    assert refreshed["refresh_expires_at"] == refreshed["access_expires_at"]
    stored = times(engine, "threads", "old")
    lifetime = stored["access_expires_at"] - stored["tokens_issued_at"]
    assert timedelta(days=59) < lifetime <= timedelta(seconds=5183944)  # seconds: 60 days
    assert newest not in (old, new)
    assert newest in threads.access_tokens
    assert row(engine, "threads", "young")["token_generation"] == 1


def test_threads_code_190_marks_the_account_for_its_user(
    cli: Cli, store_account: StoreAccount, engine: Engine, tmp_path: Path
) -> None:
    with network_app("threads", tmp_path) as (threads, env):
        # A token Threads no longer knows (revoked, or not refreshed within 60 days).
        store_threads(store_account, "gone", "THQV-revoked-long-ago", timedelta(days=50))
        result = cli("refresh", "--json", env=env)

    assert result.json()["counts"] == counts(expired=1)
    stored = row(engine, "threads", "gone")
    assert stored["status"] == "expired"
    assert stored["last_error"].startswith("Threads rejected the refresh token: 190 (HTTP 400)")
    assert presented_to(threads) == ["THQV-revoked-long-ago"]


# ----------------------------------------------------------------------------- Spotify


def test_spotify_keeps_its_refresh_token_when_no_new_one_comes(
    cli: Cli, store_account: StoreAccount, engine: Engine, fernet_key: str, tmp_path: Path
) -> None:
    with network_app("spotify", tmp_path) as (spotify, env):
        access, refresh = spotify.consent()
        store_account("spotify", "sp-user", access=access, refresh=refresh)
        before = row(engine, "spotify", "sp-user")
        sent = datetime.now(UTC)
        first = cli("refresh", "--json", env=env)
        after = datetime.now(UTC)
        stored = row(engine, "spotify", "sp-user")
        stored_times = times(engine, "spotify", "sp-user")
        second = cli("refresh", "--window", "2h", "--json", env=env)  # the new token is due

    assert first.exit_code == 0, first.stderr
    assert first.json()["counts"] == second.json()["counts"] == counts(refreshed=1)
    assert presented_to(spotify) == [refresh, refresh]
    for call in spotify.received:
        assert (call.method, call.path) == ("POST", "/api/token")
        assert spotify.basic_credentials(call) == (spotify.client_id, spotify.client_secret)
        assert set(call.form) == {"grant_type", "refresh_token"}  # the secret is not in it
    assert decrypted(fernet_key, stored["refresh_token_ciphertext"]) == refresh
    new_access = decrypted(fernet_key, stored["access_token_ciphertext"])
    assert new_access != access
    assert new_access in spotify.access_tokens
    # expires_in 3600 is seconds; the refresh token's 6 months never move with a refresh.
    expires = stored_times["access_expires_at"]
    assert sent + timedelta(hours=1) <= expires + timedelta(seconds=1)
    assert expires <= after + timedelta(hours=1)
    assert stored["refresh_expires_at"] == before["refresh_expires_at"]
    assert row(engine, "spotify", "sp-user")["token_generation"] == 3


def test_spotify_stores_a_new_refresh_token_when_one_comes_and_presents_it_next(
    cli: Cli, store_account: StoreAccount, engine: Engine, fernet_key: str, tmp_path: Path
) -> None:
    with network_app("spotify", tmp_path) as (spotify, env):
        spotify.give_new_refresh_token = True
        access, refresh = spotify.consent()
        store_account("spotify", "sp-user", access=access, refresh=refresh)
        before = row(engine, "spotify", "sp-user")
        first = cli("refresh", "--json", env=env)
        stored = row(engine, "spotify", "sp-user")
        second = cli("refresh", "--window", "2h", "--json", env=env)

    assert first.json()["counts"] == second.json()["counts"] == counts(refreshed=1)
    new_refresh = decrypted(fernet_key, stored["refresh_token_ciphertext"])
    assert new_refresh != refresh
    assert presented_to(spotify) == [refresh, new_refresh]
    assert stored["refresh_expires_at"] == before["refresh_expires_at"]
    newest = decrypted(fernet_key, row(engine, "spotify", "sp-user")["refresh_token_ciphertext"])
    assert newest in spotify.refresh_tokens


def test_spotify_invalid_grant_marks_the_account_for_its_user(
    cli: Cli, store_account: StoreAccount, engine: Engine, tmp_path: Path
) -> None:
    with network_app("spotify", tmp_path) as (spotify, env):
        store_account("spotify", "revoked", access="BQ-old", refresh="AQ-revoked-by-its-user")
        result = cli("refresh", "--json", env=env)

    assert_marked_for_reconnect(
        result,
        engine,
        "spotify",
        "revoked",
        "Spotify rejected the refresh token: invalid_grant (HTTP 400): Refresh token revoked",
    )
    assert presented_to(spotify) == ["AQ-revoked-by-its-user"]


# ----------------------------------------------------------------------------- Dropbox


def test_dropbox_refreshes_with_basic_and_presents_the_same_refresh_token_again(
    cli: Cli, store_account: StoreAccount, engine: Engine, fernet_key: str, tmp_path: Path
) -> None:
    with network_app("dropbox", tmp_path) as (dropbox, env):
        access, refresh = dropbox.consent()
        store_account("dropbox", "dbid:AAH4f99", access=access, refresh=refresh)
        sent = datetime.now(UTC)
        first = cli("refresh", "--json", env=env)
        after = datetime.now(UTC)
        stored = row(engine, "dropbox", "dbid:AAH4f99")
        expires = times(engine, "dropbox", "dbid:AAH4f99")["access_expires_at"]
        second = cli("refresh", "--window", "5h", "--json", env=env)  # 4 hours left: due

    assert first.exit_code == 0, first.stderr
    assert first.json()["counts"] == second.json()["counts"] == counts(refreshed=1)
    assert presented_to(dropbox) == [refresh, refresh]
    for call in dropbox.received:
        assert (call.method, call.path) == ("POST", "/oauth2/token")
        assert dropbox.basic_credentials(call) == (dropbox.client_id, dropbox.client_secret)
        assert call.form == {"grant_type": "refresh_token", "refresh_token": refresh}
    assert decrypted(fernet_key, stored["refresh_token_ciphertext"]) == refresh
    assert decrypted(fernet_key, stored["access_token_ciphertext"]) in dropbox.access_tokens
    # expires_in 14400 is seconds: four hours.
    assert sent + timedelta(hours=4) <= expires + timedelta(seconds=1)
    assert expires <= after + timedelta(hours=4)
    final = row(engine, "dropbox", "dbid:AAH4f99")
    assert decrypted(fernet_key, final["refresh_token_ciphertext"]) == refresh
    assert final["token_generation"] == 3


def test_dropbox_invalid_grant_marks_the_account_for_its_user(
    cli: Cli, store_account: StoreAccount, engine: Engine, tmp_path: Path
) -> None:
    with network_app("dropbox", tmp_path) as (dropbox, env):
        assert not dropbox.refresh_tokens
        store_account("dropbox", "dbid:gone", access="sl.old", refresh="dbx-revoked")
        result = cli("refresh", "--json", env=env)

    assert_marked_for_reconnect(
        result,
        engine,
        "dropbox",
        "dbid:gone",
        "Dropbox rejected the refresh token: invalid_grant (HTTP 400): "
        "refresh token is invalid or revoked",
    )


def test_dropbox_revoke_sends_the_access_token_as_a_bearer_header_and_nothing_else(
    cli: Cli, store_account: StoreAccount, engine: Engine, tmp_path: Path
) -> None:
    with network_app("dropbox", tmp_path) as (dropbox, env):
        access, refresh = dropbox.consent()
        store_account("dropbox", "dbid:left", access=access, refresh=refresh)
        account_id = row(engine, "dropbox", "dbid:left")["id"]
        result = cli("accounts", "revoke", str(account_id), "--yes", env=env)

    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"Revoked account {account_id} (dbid:left) at Dropbox; tokens erased.\n"
    [call] = dropbox.received
    assert (call.method, call.path) == ("POST", "/2/auth/token/revoke")
    assert call.headers["authorization"] == f"Bearer {access}"
    assert (call.form, call.query, call.headers.get("content-length", "0")) == ({}, {}, "0")
    assert refresh not in dropbox.refresh_tokens  # revoked with its access token
    assert access not in result.stdout + result.stderr
    stored = row(engine, "dropbox", "dbid:left")
    assert (stored["status"], stored["refresh_token_ciphertext"]) == ("revoked", None)


# ----------------------------------------------------------------------------- Xero


def test_xero_rotates_and_the_next_refresh_presents_the_new_refresh_token(
    cli: Cli, store_account: StoreAccount, engine: Engine, fernet_key: str, tmp_path: Path
) -> None:
    with network_app("xero", tmp_path) as (xero, env):
        access, refresh = xero.consent()
        store_account("xero", "xero-user", access=access, refresh=refresh)
        sent = datetime.now(UTC)
        first = cli("refresh", "--json", env=env)
        after = datetime.now(UTC)
        stored = row(engine, "xero", "xero-user")
        expires = times(engine, "xero", "xero-user")["access_expires_at"]
        not_yet = cli("refresh", "--json", env=env)  # 30 minutes left: outside the 15
        second = cli("refresh", "--window", "45m", "--json", env=env)

    assert first.exit_code == 0, first.stderr
    assert first.json()["counts"] == second.json()["counts"] == counts(refreshed=1)
    assert not_yet.json()["counts"] == counts()
    new_refresh = decrypted(fernet_key, stored["refresh_token_ciphertext"])
    assert new_refresh != refresh
    assert presented_to(xero) == [refresh, new_refresh]
    for call in xero.received:
        assert (call.method, call.path) == ("POST", "/connect/token")
        assert xero.basic_credentials(call) == (xero.client_id, xero.client_secret)
        assert set(call.form) == {"grant_type", "refresh_token"}
    assert decrypted(fernet_key, stored["access_token_ciphertext"]) in xero.access_tokens
    # expires_in 1800 is seconds: 30 minutes.
    assert sent + timedelta(minutes=30) <= expires + timedelta(seconds=1)
    assert expires <= after + timedelta(minutes=30)
    final = row(engine, "xero", "xero-user")
    assert decrypted(fernet_key, final["refresh_token_ciphertext"]) in xero.refresh_tokens
    assert xero.refresh_tokens == {decrypted(fernet_key, final["refresh_token_ciphertext"])}


def test_xero_invalid_grant_marks_the_account_for_its_user(
    cli: Cli, store_account: StoreAccount, engine: Engine, tmp_path: Path
) -> None:
    with network_app("xero", tmp_path) as (xero, env):
        access, refresh = xero.consent(age=61 * 86400)  # unused for 60 days: dead
        store_account("xero", "idle", access=access, refresh=refresh)
        result = cli("refresh", "--json", env=env)

    assert_marked_for_reconnect(
        result,
        engine,
        "xero",
        "idle",
        "Xero rejected the refresh token: invalid_grant (HTTP 400)",
    )
    assert presented_to(xero) == [refresh]


def test_xero_revoke_sends_the_refresh_token_with_basic(
    cli: Cli, store_account: StoreAccount, engine: Engine, tmp_path: Path
) -> None:
    with network_app("xero", tmp_path) as (xero, env):
        access, refresh = xero.consent()
        store_account("xero", "leaving", access=access, refresh=refresh)
        account_id = row(engine, "xero", "leaving")["id"]
        result = cli("accounts", "revoke", str(account_id), "--yes", env=env)

    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"Revoked account {account_id} (leaving) at Xero; tokens erased.\n"
    [call] = xero.received
    assert (call.method, call.path, call.form) == (
        "POST",
        "/connect/revocation",
        {"token": refresh},
    )
    assert xero.basic_credentials(call) == (xero.client_id, xero.client_secret)
    assert refresh not in xero.refresh_tokens
    assert access not in xero.access_tokens
    assert row(engine, "xero", "leaving")["status"] == "revoked"


# ------------------------------------------------------------- the Xero stand-in's grace


def xero_refresh(base_url: str, xero: Network, token: str) -> requests.Response:
    return requests.post(
        f"{base_url}/connect/token",
        data={"grant_type": "refresh_token", "refresh_token": token},
        auth=(xero.client_id, xero.client_secret),
        timeout=10,
    )


@pytest.fixture
def xero_standin() -> Iterator[tuple[Xero, str]]:
    with serving("xero") as (xero, base_url):
        assert isinstance(xero, Xero)
        yield xero, base_url


def test_xero_standin_loses_an_answer_after_rotating_and_takes_the_old_token_in_the_grace(
    xero_standin: tuple[Xero, str],
) -> None:
    xero, base_url = xero_standin
    _, old = xero.consent()
    xero.drop_next_answer = True

    with pytest.raises(requests.ConnectionError):
        xero_refresh(base_url, xero, old)
    [lost] = xero.refresh_tokens  # it rotated: the lost answer's refresh token
    assert old not in xero.refresh_tokens
    assert xero.dropped == xero.received
    xero.advance(29 * 60)
    again = xero_refresh(base_url, xero, old)  # within 30 minutes of the first use

    assert again.status_code == 200
    answer = again.json()
    assert set(answer) == {
        "id_token", "access_token", "expires_in", "token_type", "refresh_token", "scope",
    }  # fmt: skip
    assert answer["expires_in"] == 1800
    assert answer["refresh_token"] not in (old, lost)
    assert xero.refresh_tokens == {answer["refresh_token"]}  # only the newest pair lives
    assert xero_refresh(base_url, xero, lost).json() == {"error": "invalid_grant"}
    assert xero_refresh(base_url, xero, answer["refresh_token"]).status_code == 200


def test_xero_standin_grace_ends_after_30_minutes_and_when_the_chain_moves_on(
    xero_standin: tuple[Xero, str],
) -> None:
    xero, base_url = xero_standin
    _, first = xero.consent()
    _, second = xero.consent()
    assert xero_refresh(base_url, xero, first).status_code == 200
    moved_on = xero_refresh(base_url, xero, second).json()["refresh_token"]
    assert xero_refresh(base_url, xero, moved_on).status_code == 200  # second's chain moved on

    xero.advance(30 * 60 + 1)
    late = xero_refresh(base_url, xero, first)
    reused = xero_refresh(base_url, xero, second)

    assert (late.status_code, late.json()) == (400, {"error": "invalid_grant"})
    assert (reused.status_code, reused.json()) == (400, {"error": "invalid_grant"})
    wrong = requests.post(
        f"{base_url}/connect/token",
        data={"grant_type": "refresh_token", "refresh_token": moved_on},
        auth=(xero.client_id, WRONG_SECRET),
        timeout=10,
    )
    assert (wrong.status_code, wrong.json()) == (400, {"error": "invalid_client"})


def test_standins_check_credentials_the_providers_way(tmp_path: Path) -> None:
    with serving("dropbox") as (dropbox, base_url):
        assert isinstance(dropbox, Dropbox)
        _, refresh = dropbox.consent()
        in_body = requests.post(
            f"{base_url}/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh,
                "client_id": dropbox.client_id,
                "client_secret": dropbox.client_secret,
            },
            timeout=10,
        )
    with serving("spotify") as (spotify, base_url):
        assert isinstance(spotify, Spotify)
        _, sp_refresh = spotify.consent(age=183 * 86400)  # past its 6 months
        expired = requests.post(
            f"{base_url}/api/token",
            data={"grant_type": "refresh_token", "refresh_token": sp_refresh},
            auth=(spotify.client_id, spotify.client_secret),
            timeout=10,
        )
    with serving("threads") as (threads, base_url):
        assert isinstance(threads, Threads)
        young = threads_token(threads, timedelta(hours=23))
        too_young = requests.get(
            f"{base_url}/refresh_access_token",
            params={"grant_type": "th_refresh_token", "access_token": young},
            timeout=10,
        )

    assert in_body.status_code == 200  # Dropbox takes the app in the body as well as Basic
    assert in_body.json()["expires_in"] == 14400
    assert (expired.status_code, expired.json()["error"]) == (400, "invalid_grant")
    assert (too_young.status_code, too_young.json()["error"]["code"]) == (400, 100)


# ----------------------------------------------------------------------------- Threads consent


def test_threads_connect_exchanges_the_code_then_the_short_lived_token_for_a_long_lived_one(
    cli: Cli, engine: Engine, fernet_key: str, tmp_path: Path
) -> None:
    redirect = "https://app.example/threads/callback"
    with network_app("threads", tmp_path) as (threads, env):
        page = cli(
            "accounts", "authorize-url", "--app", "threads", "--redirect-uri", redirect,
            "--json", env=env,
        )  # fmt: skip
        url = str(page.json()["url"])
        code = threads.issue_code(redirect)
        result = cli(
            "accounts", "connect", "--app", "threads", "--redirect-uri", redirect,
            input=f"{code}\n", env=env,
        )  # fmt: skip

    assert page.exit_code == 0, page.stderr
    query = {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}
    assert urlsplit(url).path == "/oauth/authorize"
    assert query == {
        "client_id": threads.client_id,
        "response_type": "code",
        "redirect_uri": redirect,
        "state": page.json()["state"],
        "scope": "threads_basic",
    }
    assert result.exit_code == 0, result.stderr
    stored = row(engine, "threads", Threads.user_id)
    assert result.stdout == f"Connected new account {stored['id']} ({Threads.user_id}).\n"
    exchange, long_lived = threads.received
    assert (exchange.method, exchange.path) == ("POST", "/oauth/access_token")
    assert exchange.form["client_secret"] == threads.client_secret
    assert exchange.form["grant_type"] == "authorization_code"
    assert (long_lived.method, long_lived.path) == ("GET", "/access_token")
    assert long_lived.query["grant_type"] == "th_exchange_token"
    token = decrypted(fernet_key, stored["access_token_ciphertext"])
    assert token in threads.access_tokens  # the long-lived one, also what a refresh presents
    assert decrypted(fernet_key, stored["refresh_token_ciphertext"]) == token
