"""Scopes: an app asks for the scopes it needs and learns at once that a user must connect
again to grant one (`ReconnectNeeded`, reason `missing_scope`), before any refresh; the
operator lists those accounts (`accounts list --missing-scope`); `--scope a,b` is two.

Real SQLite and PostgreSQL, the loopback stand-in; what is asserted is what TikTok received
and what the database holds.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import Engine

from conftest import Cli
from helpers import AddAccounts, account, import_line, set_account, snapshot, stored_tokens
from standin import TikTokStandIn
from tokenrefresh import InvalidArgument, ReconnectNeeded, TokenStore
from tokenrefresh.base.scopes import check_scopes, granted_scopes

REDIRECT = "https://app.example/tiktok/callback"


def test_a_stored_scope_is_read_as_tiktok_writes_it_and_as_people_do() -> None:
    assert granted_scopes("user.info.basic,video.publish") == {"user.info.basic", "video.publish"}
    assert granted_scopes(" user.info.basic, video.publish\n") == {
        "user.info.basic",
        "video.publish",
    }
    assert granted_scopes("user.info.basic video.upload") == {"user.info.basic", "video.upload"}
    assert granted_scopes("") == granted_scopes(None) == frozenset()
    assert granted_scopes("Video.Publish") == {"Video.Publish"}  # names are case-sensitive
    assert check_scopes(["video.publish,user.info.basic", "video.publish"]) == (
        "video.publish",
        "user.info.basic",
    )


# ----------------------------------------------------------------------------- the library


def test_a_missing_scope_is_reconnect_needed_before_any_refresh(
    env: dict[str, str], add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    add_accounts(2)
    set_account(engine, "user1", scope="user.info.basic")
    # Its token needs a refresh: the scope check comes first, so TikTok hears nothing.
    set_account(engine, "user1", access_expires_at=datetime.now(UTC) + timedelta(minutes=1))
    before = snapshot(engine)
    standin.reset_log()
    with TokenStore.from_env(env) as store:
        with pytest.raises(ReconnectNeeded) as raised:
            store.access_token(open_id="user1", scopes={"video.publish", "user.info.basic"})
        with pytest.raises(ReconnectNeeded) as two:
            store.access_token(open_id="user1", scopes=["video.upload", "video.publish"])
        assert store.access_token(open_id="user1", scopes={"user.info.basic"}).open_id == "user1"
        granted = store.access_token(open_id="user0", scopes={"video.publish", "user.info.basic"})
    user1 = account(engine, "user1")["id"]
    error = raised.value
    assert str(error) == (
        f"account {user1} (user1) lacks the scope video.publish (its consent grants "
        "'user.info.basic'): its user must connect it again, granting video.publish"
    )
    assert (error.reason, error.account_id, error.open_id) == ("missing_scope", user1, "user1")
    assert error.missing_scopes == {"video.publish"}
    assert str(two.value).startswith(
        f"account {user1} (user1) lacks the scopes video.publish, video.upload ("
    )
    assert two.value.missing_scopes == {"video.publish", "video.upload"}
    assert granted.scope == "user.info.basic,video.publish"
    # Only the call that was allowed refreshed user1; the refused ones changed nothing.
    assert [received.form.get("refresh_token") is not None for received in standin.received] == [
        True
    ]
    after = snapshot(engine)
    assert after["accounts"][0] == before["accounts"][0]


def test_an_account_that_stores_no_scope_lacks_every_scope(
    env: dict[str, str], cli: Cli, standin: TikTokStandIn, engine: Engine
) -> None:
    """An import line without `scope` (it is optional): nothing says what was granted."""
    issued = standin.issue("user0")
    line = issued.as_import_line()
    del line["scope"]
    assert cli("accounts", "import", "-q", input=json.dumps(line) + "\n").exit_code == 0
    assert account(engine, "user0")["scope"] == ""
    with TokenStore.from_env(env) as store:
        with pytest.raises(ReconnectNeeded) as raised:
            store.access_token(open_id="user0", scopes={"video.publish"})
        assert store.access_token(open_id="user0").token == issued.access_token
    assert str(raised.value) == (
        "account 1 (user0) lacks the scope video.publish (no scope is stored): its user must "
        "connect it again, granting video.publish"
    )


def test_a_refresh_that_narrows_the_scope_hands_out_no_token(
    env: dict[str, str], cli: Cli, standin: TikTokStandIn, engine: Engine
) -> None:
    """TikTok's answer carries the scope it granted; a token of the narrower consent is not
    handed out to a caller that needs the scope it lost."""
    tokens = standin.issue("narrow", scope="user.info.basic")
    line = import_line(tokens, scope="user.info.basic,video.publish")
    assert cli("accounts", "import", "-q", input=line).exit_code == 0
    set_account(engine, "narrow", access_expires_at=datetime.now(UTC))
    with TokenStore.from_env(env) as store, pytest.raises(ReconnectNeeded) as raised:
        store.access_token(open_id="narrow", scopes={"video.publish"})
    assert raised.value.reason == "missing_scope"
    row = account(engine, "narrow")
    assert row["scope"] == "user.info.basic"  # refreshed, and stored as TikTok said
    access, refresh = stored_tokens(engine, "narrow", env["TOKENREFRESH_ENCRYPTION_KEYS"])
    assert refresh == standin.current_refresh_token("narrow") != tokens.refresh_token
    assert access != tokens.access_token


def test_scopes_that_are_not_scope_names_are_invalid_arguments(
    env: dict[str, str], add_accounts: AddAccounts, standin: TikTokStandIn
) -> None:
    add_accounts(1)
    standin.reset_log()
    cases = [
        ("video.publish", "scopes: scopes must be a collection of scope names"),
        ([""], "scopes: empty scope name in ''"),
        (["video.publish,"], "scopes: empty scope name in 'video.publish,'"),
        (["video publish"], "scopes: 'video publish' is not a scope name"),
        ([3], "scopes: a scope must be a string, not a int"),
    ]
    with TokenStore.from_env(env) as store:
        for scopes, message in cases:
            with pytest.raises(InvalidArgument) as raised:
                store.access_token(open_id="user0", scopes=scopes)  # type: ignore[arg-type]
            assert str(raised.value).startswith(message), (scopes, str(raised.value))
        # A comma inside one value is two scopes, as TikTok writes them.
        assert store.access_token(open_id="user0", scopes=["user.info.basic,video.publish"])
    assert standin.received == []


# ----------------------------------------------------------------------------- the CLI


def listed(cli: Cli, *args: str) -> list[str]:
    result = cli("accounts", "list", "--json", *args)
    assert result.exit_code == 0, result.stderr
    return [shown["open_id"] for shown in result.json()["accounts"]]


def test_accounts_list_missing_scope(cli: Cli, add_accounts: AddAccounts, engine: Engine) -> None:
    add_accounts(4)  # user.info.basic,video.publish
    set_account(engine, "user1", scope="user.info.basic")
    set_account(engine, "user2", scope="user.info.basic,video.upload", status="expired")
    set_account(engine, "user3", scope="")
    assert listed(cli, "--missing-scope", "video.publish") == ["user1", "user2", "user3"]
    assert listed(cli, "--missing-scope", "video.upload") == ["user0", "user1", "user3"]
    either = ["user0", "user1", "user2", "user3"]
    assert listed(cli, "--missing-scope", "video.publish", "--missing-scope", "video.upload") == (
        either
    )
    assert listed(cli, "--missing-scope", "video.publish,video.upload") == either
    assert listed(cli, "--missing-scope", "user.info.basic") == ["user3"]
    assert listed(cli, "--missing-scope", "video.publish", "--status", "active") == [
        "user1",
        "user3",
    ]
    plain = cli("accounts", "list", "--missing-scope", "video.publish")
    assert plain.exit_code == 0, plain.stderr
    title, _header, *rows = plain.stdout.splitlines()
    assert title == "3 account(s):"
    assert [re.split(r"\s{2,}", row)[1] for row in rows] == ["user1", "user2", "user3"]
    none = cli("accounts", "list", "--missing-scope", "user.info.basic", "--status", "expired")
    assert (none.exit_code, none.stdout) == (0, "No accounts.\n")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "empty scope name in ''"),
        ("video.publish,,user.info.basic", "empty scope name in 'video.publish,,user.info.basic'"),
        ("video publish", "'video publish' is not a scope name"),
    ],
    ids=["empty", "empty-between-commas", "space"],
)
def test_a_bad_scope_option_is_a_usage_error_naming_it(
    cli: Cli, add_accounts: AddAccounts, standin: TikTokStandIn, value: str, message: str
) -> None:
    add_accounts(1)
    standin.reset_log()
    for args in (
        ("accounts", "list", "--missing-scope", value),
        ("accounts", "token", "--open-id", "user0", "--scope", value),
        ("accounts", "authorize-url", "--redirect-uri", REDIRECT, "--scope", value),
    ):
        result = cli(*args)
        option = args[-2]
        assert result.exit_code == 2, (args, result.stderr)
        assert result.stdout == ""
        assert result.stderr.startswith(f"error: {option}: {message}"), result.stderr
    assert standin.received == []


def test_authorize_url_takes_comma_separated_scopes(cli: Cli, standin: TikTokStandIn) -> None:
    def scope_of(*scopes: str) -> list[str]:
        args = [arg for scope in scopes for arg in ("--scope", scope)]
        result = cli("accounts", "authorize-url", "--redirect-uri", REDIRECT, "--json", *args)
        assert result.exit_code == 0, result.stderr
        return parse_qs(urlsplit(result.json()["url"]).query)["scope"]

    wanted = ["user.info.basic,video.publish,video.upload"]
    assert scope_of("user.info.basic,video.publish", "video.upload") == wanted
    assert scope_of("user.info.basic", "video.publish", "video.upload") == wanted
    assert scope_of("user.info.basic,video.publish", "video.publish") == [
        "user.info.basic,video.publish"
    ]
    assert scope_of() == ["user.info.basic"]


def test_accounts_token_with_scope(
    cli: Cli, add_accounts: AddAccounts, engine: Engine, standin: TikTokStandIn
) -> None:
    issued = add_accounts(2)
    set_account(engine, "user1", scope="user.info.basic")
    standin.reset_log()
    ok = cli("accounts", "token", "user0", "--scope", "video.publish,user.info.basic")
    assert (ok.exit_code, ok.stdout) == (0, issued[0].access_token + "\n")
    refused = cli("accounts", "token", "--open-id", "user1", "--scope", "video.publish")
    assert (refused.exit_code, refused.stdout) == (1, "")
    user1 = account(engine, "user1")["id"]
    assert refused.stderr == (
        f"error: account {user1} (user1) lacks the scope video.publish (its consent grants "
        "'user.info.basic'): its user must connect it again, granting video.publish\n"
    )
    assert standin.received == []
