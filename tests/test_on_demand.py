"""The library face: `TokenStore.access_token`, refresh on demand, and its errors.

A real SQLite and PostgreSQL, the loopback stand-in for TikTok, real threads; what is
asserted is what TikTok received and what the database holds.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from conftest import Cli, run_python
from helpers import (
    RECONNECT_MESSAGES,
    AddAccounts,
    account,
    assert_no_secret,
    set_account,
    stored_tokens,
)
from standin import IssuedTokens, TikTokStandIn, tiktok_error
from tokenrefresh import (
    AccountNotFound,
    ConfigurationError,
    ReconnectNeeded,
    TemporarilyUnavailable,
    TokenRefreshError,
    TokenStore,
)
from tokenrefresh.storage.records import AccountStatus


def store_for(env: dict[str, str], **options: Any) -> TokenStore:
    return TokenStore.from_env(env, **options)


def only_user0(
    add_accounts: AddAccounts,
    engine: Engine,
    standin: TikTokStandIn,
    expires_in: timedelta | None = None,
    **row: Any,
) -> list[IssuedTokens]:
    """One account, user0, its row changed so (expires_in: its access token's lifetime from
    now); then the stand-in's log is cleared."""
    issued = add_accounts(1)
    if expires_in is not None:
        row["access_expires_at"] = datetime.now(UTC) + expires_in
    set_account(engine, "user0", **row)
    standin.reset_log()
    return issued


def refreshes(standin: TikTokStandIn) -> int:
    return sum(1 for received in standin.received if received.path.endswith("/token/"))


# ----------------------------------------------------------------------------- fresh reads


def test_a_fresh_token_is_read_without_calling_tiktok(
    env: dict[str, str], add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    issued = add_accounts(2)
    standin.reset_log()
    with store_for(env) as store:
        by_open_id = store.access_token(open_id="user1")
        by_id = store.access_token(account_id=account(engine, "user0")["id"])
    assert by_open_id.token == issued[1].access_token
    assert by_id.token == issued[0].access_token
    assert (by_open_id.open_id, by_open_id.account_id) == ("user1", account(engine, "user1")["id"])
    assert by_open_id.expires_at == account(engine, "user1")["access_expires_at"]
    assert by_open_id.expires_at.tzinfo is not None
    assert by_open_id.scope == account(engine, "user1")["scope"]
    assert standin.received == []
    for shown in (repr(by_open_id), str(by_open_id), f"{by_open_id}", repr(store)):
        assert_no_secret(shown, issued[1].access_token, issued[1].refresh_token)


def test_a_token_too_close_to_its_expiry_is_refreshed_once(
    env: dict[str, str], add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    issued = only_user0(add_accounts, engine, standin, expires_in=timedelta(minutes=4))
    with store_for(env) as store:
        token = store.access_token(open_id="user0", min_valid=timedelta(minutes=5))
        again = store.access_token(open_id="user0", min_valid=timedelta(minutes=5))
    assert refreshes(standin) == 1
    assert standin.received[0].form["refresh_token"] == issued[0].refresh_token
    assert token.token != issued[0].access_token
    assert again.token == token.token
    access, refresh = stored_tokens(engine, "user0", env["TOKENREFRESH_ENCRYPTION_KEYS"])
    assert (access, refresh) == (token.token, standin.current_refresh_token("user0"))
    assert token.expires_at > datetime.now(UTC) + timedelta(hours=1)


def test_min_valid_asks_for_more_than_the_stored_token_has(
    env: dict[str, str], add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    only_user0(add_accounts, engine, standin, expires_in=timedelta(hours=1))
    with store_for(env) as store:
        store.access_token(open_id="user0", min_valid=timedelta(minutes=59))
        assert refreshes(standin) == 0
        store.access_token(open_id="user0", min_valid=timedelta(minutes=61))
        assert refreshes(standin) == 1


def test_one_refresh_for_many_threads_asking_at_once(
    env: dict[str, str], add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    only_user0(add_accounts, engine, standin, expires_in=timedelta(seconds=30))
    standin.latency = 0.3
    tokens: list[str] = []
    errors: list[BaseException] = []
    with store_for(env) as store:

        def ask() -> None:
            try:
                tokens.append(store.access_token(open_id="user0").token)
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=ask) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert errors == []
    assert refreshes(standin) == 1
    assert len(tokens) == 12
    assert len(set(tokens)) == 1


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"status": AccountStatus.EXPIRED.value}, RECONNECT_MESSAGES["expired"]),
        ({"status": AccountStatus.REVOKED.value}, RECONNECT_MESSAGES["revoked"]),
        ({"status": AccountStatus.DISABLED.value}, RECONNECT_MESSAGES["disabled"]),
        (
            {"refresh_token_ciphertext": None, "access_token_ciphertext": None},
            RECONNECT_MESSAGES["no_refresh_token"],
        ),
    ],
    ids=["expired", "revoked", "disabled", "no-tokens"],
)
def test_an_account_that_needs_its_user_raises_reconnect_needed(
    env: dict[str, str],
    add_accounts: AddAccounts,
    standin: TikTokStandIn,
    engine: Engine,
    state: dict[str, Any],
    message: str,
) -> None:
    only_user0(add_accounts, engine, standin, **state)
    with store_for(env) as store, pytest.raises(ReconnectNeeded) as raised:
        store.access_token(open_id="user0")
    assert str(raised.value) == f"account {account(engine, 'user0')['id']} (user0) {message}"
    assert isinstance(raised.value, TokenRefreshError)
    assert standin.received == []


def test_tiktok_rejecting_the_refresh_token_marks_it_expired(
    env: dict[str, str], add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    add_accounts(1)
    standin.revoke("user0")
    with store_for(env) as store, pytest.raises(ReconnectNeeded) as raised:
        store.access_token(open_id="user0", min_valid=timedelta(hours=3))
    assert str(raised.value) == (
        "account 1 (user0): TikTok rejected the refresh token: invalid_grant (HTTP 400): "
        "Refresh token is invalid or expired.; its user revoked access, or the token ran out: "
        "TikTok does not say which; its user must reconnect (`tokenrefresh accounts "
        "connect`, or `accounts import` of new tokens)"
    )
    assert account(engine, "user0")["status"] == AccountStatus.EXPIRED
    assert account(engine, "user0")["lease_owner"] is None


def test_a_transient_failure_does_not_hand_out_a_token_too_short(
    env: dict[str, str], add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    """The stored token is still valid for a while, but not for min_valid: not returned."""
    issued = add_accounts(1)
    standin.script(*[tiktok_error("server_error", 503)] * 3, open_id="user0")
    with store_for(env) as store:
        with pytest.raises(TemporarilyUnavailable) as raised:
            store.access_token(open_id="user0", min_valid=timedelta(hours=3))
        assert "could not be refreshed now" in str(raised.value)
        assert_no_secret(str(raised.value), issued[0].access_token, issued[0].refresh_token)
        # Asked again at once: no new call to TikTok (the failure is remembered briefly).
        calls = refreshes(standin)
        with pytest.raises(TemporarilyUnavailable, match="not tried again yet"):
            store.access_token(open_id="user0", min_valid=timedelta(hours=3))
        assert refreshes(standin) == calls
        # A token that is good enough is still handed out meanwhile.
        assert store.access_token(open_id="user0").token == issued[0].access_token
    row = account(engine, "user0")
    assert (row["status"], row["consecutive_failures"]) == ("active", 1)
    assert row["lease_owner"] is None


def test_unknown_accounts_and_bad_arguments(env: dict[str, str], add_accounts: AddAccounts) -> None:
    add_accounts(1)
    with store_for(env) as store:
        with pytest.raises(AccountNotFound, match=r"^no account with open_id 'nobody'$"):
            store.access_token(open_id="nobody")
        with pytest.raises(AccountNotFound, match=r"^no account with id 999$"):
            store.access_token(account_id=999)
        with pytest.raises(TypeError, match="exactly one of account_id and open_id"):
            store.access_token(account_id=1, open_id="user0")
        with pytest.raises(TypeError, match="exactly one of account_id and open_id"):
            store.access_token()
        with pytest.raises(ValueError, match="min_valid must not be negative"):
            store.access_token(open_id="user0", min_valid=timedelta(seconds=-1))
        assert store.account(open_id="user0").open_id == "user0"


def test_configuration_errors(env: dict[str, str], add_accounts: AddAccounts) -> None:
    add_accounts(1)
    with pytest.raises(ConfigurationError, match="TOKENREFRESH_ENCRYPTION_KEYS"):
        TokenStore(database_url=env["TOKENREFRESH_DATABASE_URL"])
    from cryptography.fernet import Fernet

    wrong = Fernet.generate_key().decode()
    with pytest.raises(ConfigurationError) as raised:
        TokenStore(database_url=env["TOKENREFRESH_DATABASE_URL"], encryption_keys=[wrong])
    assert_no_secret(str(raised.value), wrong, env["TOKENREFRESH_ENCRYPTION_KEYS"])


def test_explicit_configuration_works_like_the_environment(
    env: dict[str, str], add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    add_accounts(1)
    set_account(engine, "user0", access_expires_at=datetime.now(UTC))
    with TokenStore(
        database_url=env["TOKENREFRESH_DATABASE_URL"],
        encryption_keys=env["TOKENREFRESH_ENCRYPTION_KEYS"],
        client_key=standin.client_key,
        client_secret=standin.client_secret,
        api_base_url=standin.base_url,
    ) as store:
        token = store.access_token(open_id="user0")
    assert refreshes(standin) == 1
    assert stored_tokens(engine, "user0", env["TOKENREFRESH_ENCRYPTION_KEYS"])[0] == token.token


def test_a_fresh_read_needs_no_tiktok_credentials(
    env: dict[str, str], add_accounts: AddAccounts
) -> None:
    issued = add_accounts(1)
    reading = {k: v for k, v in env.items() if not k.startswith("TIKTOK_CLIENT")}
    with TokenStore.from_env(reading) as store:
        assert store.access_token(open_id="user0").token == issued[0].access_token
        with pytest.raises(ConfigurationError, match="TIKTOK_CLIENT_KEY"):
            store.access_token(open_id="user0", min_valid=timedelta(hours=3))


# ----------------------------------------------------------------------------- exclusion


def test_a_caller_waits_for_the_lease_holder_and_takes_its_result(
    env: dict[str, str], add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    only_user0(add_accounts, engine, standin, expires_in=timedelta(minutes=1))
    standin.slow["user0"] = 1.0
    with store_for(env) as first, store_for(env) as second:
        results: list[str] = []
        holder = threading.Thread(
            target=lambda: results.append(first.access_token(open_id="user0").token)
        )
        holder.start()
        standin.wait_for_requests(1)
        assert account(engine, "user0")["lease_owner"] is not None
        waited = second.access_token(open_id="user0")
        holder.join(30)
    assert refreshes(standin) == 1
    assert results == [waited.token]


def test_a_caller_gives_up_after_its_wait(
    env: dict[str, str], add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    issued = add_accounts(1)
    lease = datetime.now(UTC) + timedelta(minutes=3)
    set_account(engine, "user0", lease_owner="another-host:1:cafe", lease_expires_at=lease)
    with store_for(env, wait=timedelta(seconds=0.5)) as store:
        started = time.monotonic()
        with pytest.raises(TemporarilyUnavailable, match="being refreshed by another process"):
            store.access_token(open_id="user0", min_valid=timedelta(hours=3))
        assert time.monotonic() - started < 10
        # The fresh read does not look at leases: a good token is handed out meanwhile.
        assert store.access_token(open_id="user0").token == issued[0].access_token
    assert refreshes(standin) == 0


# ----------------------------------------------------------------------------- no CLI stack


def test_the_library_imports_neither_typer_nor_rich(
    env: dict[str, str], add_accounts: AddAccounts, engine: Engine
) -> None:
    add_accounts(1)
    set_account(engine, "user0", access_expires_at=datetime.now(UTC))
    script = (
        "import sys\n"
        "from tokenrefresh import TokenStore\n"
        "with TokenStore.from_env() as store:\n"
        "    store.access_token(open_id='user0')\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'typer', 'rich', 'click'})\n"
        "print(','.join(loaded) or 'none')\n"
    )
    result = run_python(script, config=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "none\n"


def test_accounts_token_refreshes_on_demand(
    cli: Cli,
    env: dict[str, str],
    add_accounts: AddAccounts,
    standin: TikTokStandIn,
    engine: Engine,
) -> None:
    issued = add_accounts(1)
    standin.reset_log()
    kept = cli("accounts", "token", "--open-id", "user0", "--min-valid", "1h")
    assert kept.exit_code == 0, kept.stderr
    assert kept.stdout == issued[0].access_token + "\n"
    assert refreshes(standin) == 0
    fresh = cli("accounts", "token", "--open-id", "user0", "--min-valid", "3h")
    assert fresh.exit_code == 2  # TikTok's tokens last 2h: asking again will not help
    assert "TikTok's access tokens last 2h; asked for 3h." in fresh.stderr
    assert refreshes(standin) == 1
    newest = cli("accounts", "token", "--open-id", "user0", "--min-valid", "1h")
    key = env["TOKENREFRESH_ENCRYPTION_KEYS"]
    assert newest.stdout == f"{stored_tokens(engine, 'user0', key)[0]}\n"
    assert refreshes(standin) == 1
