"""`accounts list` and `accounts show` give no expiry for an account whose tokens no longer
work or are gone (revoked, expired, erased): null in JSON, a dash in the list's text
(issue 18 item 6). An active account still shows both."""

from __future__ import annotations

import re

from sqlalchemy import Engine

from conftest import Cli
from helpers import AddAccounts, set_account

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
EXPIRIES = ("access_expires_at", "refresh_expires_at")


def four_accounts(cli: Cli, add_accounts: AddAccounts, engine: Engine) -> None:
    """user0 active, user1 revoked, user2 expired with its (rejected) tokens still stored,
    user3 expired with its tokens erased by cleanup; ids 1 to 4."""
    add_accounts(4, label="Shop")
    assert cli("accounts", "revoke", "user1", "--yes").exit_code == 0
    set_account(engine, "user2", status="expired", last_error="TikTok rejected it")
    set_account(
        engine,
        "user3",
        status="expired",
        access_token_ciphertext=None,
        refresh_token_ciphertext=None,
    )


def test_list_json_has_no_expiry_without_working_tokens(
    cli: Cli, add_accounts: AddAccounts, engine: Engine
) -> None:
    four_accounts(cli, add_accounts, engine)
    result = cli("accounts", "list", "--json")
    assert result.exit_code == 0, result.stderr
    listed = {a["open_id"]: a for a in result.json()["accounts"]}
    assert [listed[o]["status"] for o in sorted(listed)] == [
        "active",
        "revoked",
        "expired",
        "expired",
    ]
    for name in EXPIRIES:
        assert TIMESTAMP.match(listed["user0"][name]), name
        assert [listed[o][name] for o in ("user1", "user2", "user3")] == [None, None, None]
    assert [listed[o]["has_tokens"] for o in sorted(listed)] == [True, False, True, False]


def test_list_text_has_a_dash_for_no_expiry(
    cli: Cli, add_accounts: AddAccounts, engine: Engine
) -> None:
    four_accounts(cli, add_accounts, engine)
    result = cli("accounts", "list")
    assert result.exit_code == 0, result.stderr
    rows = [re.split(r"\s{2,}", line) for line in result.stdout.splitlines()[2:]]
    assert [r[1] for r in rows] == ["user0", "user1", "user2", "user3"]
    assert re.fullmatch(r"in 1h\d+m|in 2h", rows[0][4]), rows[0]
    assert re.fullmatch(r"in 17\dd\d+h|in 180d", rows[0][5]), rows[0]
    assert [r[4:6] for r in rows[1:]] == [["-", "-"]] * 3


def test_show_json_agrees_with_the_list(
    cli: Cli, add_accounts: AddAccounts, engine: Engine
) -> None:
    four_accounts(cli, add_accounts, engine)
    listed = cli("accounts", "list", "--json").json()["accounts"]
    for entry in listed:
        shown = cli("accounts", "show", str(entry["id"]), "--json")
        assert shown.exit_code == 0, shown.stderr
        assert shown.json()["account"] == entry
