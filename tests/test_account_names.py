"""Every `accounts` command that takes an account takes its id or its open_id (issue 18
item 6): a number is always an id, `--open-id X` always an open_id (even all digits), any
other word an open_id; no match is exit 2 with nothing changed. Revoking an already revoked
account says so and sends TikTok nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from conftest import Cli
from helpers import AddAccounts, account, all_rows, run_ok, snapshot
from standin import TikTokStandIn

COMMANDS = [
    ["show"],
    ["disable"],
    ["enable"],
    ["revoke", "--yes"],
    ["remove", "--yes"],
    ["token"],
]


def test_show_by_open_id_is_show_by_id(cli: Cli, add_accounts: AddAccounts) -> None:
    add_accounts(2)
    by_id = cli("accounts", "show", "2", "--json")
    assert by_id.exit_code == 0, by_id.stderr
    for args in (["user1"], ["--open-id", "user1"]):
        by_open_id = cli("accounts", "show", *args, "--json")
        assert by_open_id.exit_code == 0, by_open_id.stderr
        assert by_open_id.json() == by_id.json()
        assert by_open_id.json()["account"]["open_id"] == "user1"


def test_disable_and_enable_by_open_id(cli: Cli, add_accounts: AddAccounts, engine: Engine) -> None:
    add_accounts(2)
    other = account(engine, "user0")
    run_ok(cli, "accounts", "disable", "user1", stdout="Account 2 (user1) is disabled.\n")
    assert account(engine, "user1")["status"] == "disabled"
    run_ok(cli, "accounts", "enable", "--open-id", "user1", stdout="Account 2 (user1) is active.\n")
    assert account(engine, "user1")["status"] == "active"
    assert account(engine, "user0") == other


def test_revoke_and_remove_by_open_id(
    cli: Cli, add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    issued = add_accounts(2)
    command = ("accounts", "revoke", "user1", "--yes")
    run_ok(cli, *command, stdout="Revoked account 2 (user1) at TikTok; tokens erased.\n")
    assert standin.access_revoked(issued[1].access_token)
    assert not standin.access_revoked(issued[0].access_token)
    command = ("accounts", "remove", "--open-id", "user1", "--yes")
    run_ok(cli, *command, stdout="Removed account 2 (user1).\n")
    assert [row["open_id"] for row in all_rows(engine)["accounts"]] == ["user0"]


def test_a_number_is_an_id_and_open_id_option_an_open_id(
    cli: Cli, add_accounts: AddAccounts, engine: Engine
) -> None:
    """An all-digit open_id is reached with --open-id; the bare number is an id."""
    add_accounts(2)  # ids 1, 2
    add_accounts(1, prefix="")  # open_id "0", id 3
    add_accounts(1, prefix="1")  # open_id "10", id 4
    shown = cli("accounts", "show", "--open-id", "1", "--json")
    assert shown.exit_code == 2
    assert shown.stderr == "error: no account with open_id '1'\n"
    by_open_id = cli("accounts", "show", "--open-id", "10", "--json")
    assert by_open_id.exit_code == 0, by_open_id.stderr
    assert (by_open_id.json()["account"]["id"], by_open_id.json()["account"]["open_id"]) == (
        4,
        "10",
    )
    by_id = cli("accounts", "show", "1", "--json")
    assert (by_id.json()["account"]["id"], by_id.json()["account"]["open_id"]) == (1, "user0")
    assert cli("accounts", "show", "0").stderr == "error: no account with id 0\n"


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_an_unknown_open_id_changes_nothing(
    cli: Cli, add_accounts: AddAccounts, engine: Engine, standin: TikTokStandIn, command: list[str]
) -> None:
    add_accounts(1)
    before = snapshot(engine), all_rows(engine)["accounts"]
    sent = len(standin.received)
    for args in (["nobody"], ["--open-id", "nobody"]):
        result = cli("accounts", *command, *args)
        assert result.exit_code == 2
        assert result.stdout == ""
        assert result.stderr == "error: no account with open_id 'nobody'\n"
    assert (snapshot(engine), all_rows(engine)["accounts"]) == before
    assert len(standin.received) == sent


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize("args", [["1", "--open-id", "user0"], []], ids=["both", "neither"])
def test_exactly_one_of_account_and_open_id(
    cli: Cli, add_accounts: AddAccounts, engine: Engine, command: list[str], args: list[str]
) -> None:
    add_accounts(1)
    before = all_rows(engine)["accounts"]
    result = cli("accounts", *command, *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == "error: give an account (id or open_id) or --open-id, not both\n"
    assert all_rows(engine)["accounts"] == before


@pytest.mark.parametrize("command", [c[0] for c in COMMANDS])
def test_help_states_the_rule(cli: Cli, command: str) -> None:
    result = cli("accounts", command, "--help", env={"COLUMNS": "200"})
    assert result.exit_code == 0
    flowed = " ".join(result.stdout.split())
    assert "[ACCOUNT]" in flowed
    assert "a number is its id, anything else its open_id" in flowed
    assert "--open-id OPEN_ID" in flowed


def test_revoking_an_already_revoked_account_says_so(
    cli: Cli, add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    add_accounts(1)
    assert cli("accounts", "revoke", "1", "--yes").exit_code == 0
    revoked_row = account(engine, "user0")
    sent = len(standin.received)
    for args in (["1", "--yes"], ["user0"]):  # no confirmation needed: nothing to do
        again = cli("accounts", "revoke", *args)
        assert again.exit_code == 0, again.stderr
        assert again.stdout == (
            "Account 1 (user0) is already revoked: nothing was sent to TikTok.\n"
        )
        assert again.stderr == ""
    assert len(standin.received) == sent
    assert account(engine, "user0") == revoked_row


def test_remove_with_revoke_of_an_already_revoked_account_sends_nothing(
    cli: Cli, add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    add_accounts(2)
    assert cli("accounts", "revoke", "user0", "--yes").exit_code == 0
    sent = len(standin.received)
    result = cli("accounts", "remove", "user0", "--revoke", "--yes")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "Account 1 (user0) is already revoked: nothing was sent to TikTok.\n"
        "Removed account 1 (user0).\n"
    )
    assert len(standin.received) == sent
    assert [row["open_id"] for row in all_rows(engine)["accounts"]] == ["user1"]
