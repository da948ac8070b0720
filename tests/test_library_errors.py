"""The library for an app to build on: a store never creates a database, and its errors
carry data (`reason`, `account_id`, `open_id`), not only words; the configuration error is
shown as `ConfigurationError`.

Real SQLite and PostgreSQL, the loopback stand-in, and a real process for a traceback.
"""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from conftest import Cli, run_python
from helpers import AddAccounts, account, import_line, set_account
from standin import TikTokStandIn, tiktok_error
from tokenrefresh import (
    AccountNotFound,
    ConfigurationError,
    MinValidUnreachable,
    ReconnectNeeded,
    TemporarilyUnavailable,
    TokenStore,
)
from tokenrefresh.errors import RECONNECT_REASONS, ConfigError
from tokenrefresh.services.accounts import Accounts
from tokenrefresh.services.refresh.plan import Plan, RefreshOptions
from tokenrefresh.storage.repository import GrantNotStored, Repository

# ----------------------------------------------------------------------------- no database


def embedded_path() -> Path:
    """Where the CLI's embedded database is for this test (HOME and XDG_DATA_HOME point
    into tmp_path: see `make_env`)."""
    from tokenrefresh.storage.engine import default_database_path

    return default_database_path()


def without_database(env: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in env.items() if name != "TOKENREFRESH_DATABASE_URL"}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_store_without_a_database_is_a_configuration_error_and_creates_none(
    env: dict[str, str], tmp_path: Path
) -> None:
    config = without_database(env)
    path = embedded_path()
    assert str(path).startswith(str(tmp_path))
    expected = (
        "no database: TOKENREFRESH_DATABASE_URL (or TOKENREFRESH_DATABASE_URL_FILE) is not "
        f"set, and there is no embedded database at {path} (the default, which only the "
        "command line creates). Set TOKENREFRESH_DATABASE_URL to the database your "
        "tokenrefresh installation uses, or run `tokenrefresh db upgrade` to create the "
        "embedded one"
    )
    with pytest.raises(ConfigurationError) as raised:
        TokenStore.from_env(config)
    assert str(raised.value) == expected
    assert raised.value.reason == "configuration"
    with pytest.raises(ConfigurationError) as explicit:
        TokenStore(encryption_keys=env["TOKENREFRESH_ENCRYPTION_KEYS"])
    assert str(explicit.value) == expected
    assert not path.exists()
    assert not path.parent.exists()  # not even its folder


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_store_opens_the_embedded_database_the_cli_made(
    env: dict[str, str], cli: Cli, standin: TikTokStandIn
) -> None:
    """The CLI still creates (and migrates) its embedded default on first use; a store then
    finds it there."""
    config = without_database(env)
    tokens = standin.issue("creator-1")
    line = import_line(tokens)
    imported = cli("accounts", "import", "-q", input=line, env={"TOKENREFRESH_DATABASE_URL": None})
    assert imported.exit_code == 0, imported.stderr
    assert embedded_path().is_file()
    with TokenStore.from_env(config) as store:
        assert store.access_token(open_id="creator-1").token == tokens.access_token


def test_the_configuration_error_is_shown_as_configuration_error(tmp_path: Path) -> None:
    error = ConfigurationError("TOKENREFRESH_ENCRYPTION_KEYS is not set")
    assert type(error).__name__ == "ConfigurationError"
    assert repr(error) == "ConfigurationError('TOKENREFRESH_ENCRYPTION_KEYS is not set')"
    assert ConfigError is ConfigurationError  # the old name, for code that used it
    # A traceback, as an app's log shows it: in a real process.
    script = "from tokenrefresh import TokenStore\nTokenStore.from_env({})\n"
    home = tmp_path / "home"
    extra = {"HOME": str(home), "XDG_DATA_HOME": str(home / ".local" / "share")}
    result = run_python(script, config={}, extra=extra, timeout=60)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("tokenrefresh.errors.ConfigurationError: no database: "), last
    assert "ConfigError" not in result.stderr


# ----------------------------------------------------------------------------- data


def data(error: Any) -> tuple[str, int | None, str | None]:
    return error.reason, error.account_id, error.open_id


def test_account_not_found_says_which_account(
    env: dict[str, str], add_accounts: AddAccounts, repository: Repository
) -> None:
    add_accounts(1)
    with TokenStore.from_env(env) as store:
        for call in (store.access_token, store.account):
            with pytest.raises(AccountNotFound) as by_open_id:
                call(open_id="nobody")
            assert data(by_open_id.value) == ("not_found", None, "nobody")
            with pytest.raises(AccountNotFound) as by_id:
                call(account_id=999)
            assert data(by_id.value) == ("not_found", 999, None)
        with pytest.raises(AccountNotFound) as revoking:
            store.revoke(open_id="nobody")
        assert data(revoking.value) == ("not_found", None, "nobody")
    accounts = Accounts(repository)  # the CLI's account commands
    with pytest.raises(AccountNotFound) as by_open_id:
        accounts.get(open_id="x")
    assert data(by_open_id.value) == ("not_found", None, "x")
    for call in (
        lambda: accounts.get(998),
        lambda: accounts.remove(998),
        lambda: accounts.set_enabled(998, False),
        lambda: accounts.set_enabled(998, True),
    ):
        with pytest.raises(AccountNotFound) as by_id:
            call()
        assert data(by_id.value) == ("not_found", 998, None)
    with pytest.raises(AccountNotFound) as one:  # refresh --account-id 997
        Plan(repository, RefreshOptions(account_ids=(997,)))
    assert data(one.value) == ("not_found", 997, None)
    with pytest.raises(AccountNotFound) as several:
        Plan(repository, RefreshOptions(account_ids=(997, 1, 996)))
    assert (str(several.value), *data(several.value)) == (
        "no accounts with ids 996, 997",
        "not_found",
        None,
        None,
    )


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ({"status": "expired"}, "expired"),
        ({"status": "revoked"}, "revoked"),
        ({"status": "disabled"}, "disabled"),
        ({"refresh_token_ciphertext": None, "access_token_ciphertext": None}, "no_refresh_token"),
        ({"refresh_expires_at": datetime(2020, 1, 1, tzinfo=UTC)}, "refresh_token_expired"),
    ],
    ids=["expired", "revoked", "disabled", "no-refresh-token", "refresh-token-expired"],
)
def test_reconnect_needed_says_why_and_which_account(
    env: dict[str, str],
    add_accounts: AddAccounts,
    engine: Engine,
    state: dict[str, Any],
    reason: str,
) -> None:
    add_accounts(2)
    set_account(engine, "user1", **state)
    with TokenStore.from_env(env) as store, pytest.raises(ReconnectNeeded) as raised:
        store.access_token(open_id="user1")
    assert data(raised.value) == (reason, account(engine, "user1")["id"], "user1")
    assert raised.value.missing_scopes == frozenset()
    assert reason in RECONNECT_REASONS


def test_a_refresh_token_tiktok_rejects_is_reason_expired(
    env: dict[str, str], add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    add_accounts(1)
    standin.revoke("user0")
    with TokenStore.from_env(env) as store, pytest.raises(ReconnectNeeded) as raised:
        store.access_token(open_id="user0", min_valid=timedelta(hours=3))
    assert data(raised.value) == ("expired", account(engine, "user0")["id"], "user0")
    assert account(engine, "user0")["status"] == "expired"


def test_the_other_account_errors_carry_their_account(
    env: dict[str, str], add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    add_accounts(2)
    user0, user1 = account(engine, "user0")["id"], account(engine, "user1")["id"]
    standin.script(*[tiktok_error("server_error", 503)] * 3, open_id="user1")
    with TokenStore.from_env(env) as store:
        with pytest.raises(MinValidUnreachable) as unreachable:
            store.access_token(open_id="user0", min_valid=timedelta(hours=3))
        with pytest.raises(TemporarilyUnavailable) as failed:
            store.access_token(open_id="user1", min_valid=timedelta(hours=3))
        with pytest.raises(TemporarilyUnavailable) as remembered:
            store.access_token(account_id=user1, min_valid=timedelta(hours=3))
    assert data(unreachable.value) == ("min_valid_unreachable", user0, "user0")
    assert data(failed.value) == ("refresh_failed", user1, "user1")
    assert data(remembered.value) == ("refresh_failed", user1, "user1")


def test_an_error_keeps_its_data_when_pickled() -> None:
    """An app that hands errors between processes (multiprocessing, a task queue)."""
    error = ReconnectNeeded(
        "account 7 (abc) lacks the scope video.publish",
        reason="missing_scope",
        account_id=7,
        open_id="abc",
        missing_scopes=frozenset({"video.publish"}),
    )
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert type(copy) is ReconnectNeeded
    assert (str(copy), *data(copy)) == (str(error), "missing_scope", 7, "abc")
    assert copy.missing_scopes == frozenset({"video.publish"})
    pickled = pickle.dumps(AccountNotFound("no account with id 3", account_id=3))
    plain = pickle.loads(pickled)  # noqa: S301 - our own bytes
    assert (str(plain), *data(plain)) == ("no account with id 3", "not_found", 3, None)
    # One whose constructor takes other arguments than its message.
    lost = pickle.loads(pickle.dumps(GrantNotStored("disk full")))  # noqa: S301
    assert (str(lost), lost.detail, lost.reason) == (
        str(GrantNotStored("disk full")),
        "disk full",
        "not_stored",
    )
