"""`accounts list/show/token/remove/disable/enable`: what they print, what they change,
and that no token or ciphertext ever reaches the output (except `token`, by design).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from conftest import Cli
from helpers import (
    RECONNECT_MESSAGES,
    account,
    assert_no_secret,
    assert_refused,
    attempts,
    counts,
    set_account,
    snapshot,
    stored_tokens,
)
from standin import IssuedTokens, TikTokStandIn, tiktok_error
from tokenrefresh.base.clock import utcnow
from tokenrefresh.storage.models import AccountStatus
from tokenrefresh.storage.repository import Repository

AddAccounts = Callable[..., list[IssuedTokens]]

ACCOUNT_KEYS = {
    "id",
    "app",
    "provider",
    "user_id",
    "open_id",
    "label",
    "status",
    "scope",
    "access_expires_at",
    "refresh_expires_at",
    "last_refreshed_at",
    "last_error",
    "consecutive_failures",
    "next_attempt_at",
    "created_at",
    "updated_at",
    "has_tokens",
}
ATTEMPT_KEYS = {
    "attempted_at",
    "run_id",
    "outcome",
    "http_status",
    "error_code",
    "log_id",
    "duration_ms",
    "message",
}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def cells(line: str) -> list[str]:
    """A plain-text table row's cells: what stands between runs of two or more spaces."""
    return re.split(r"\s{2,}", line)


def secrets_of(engine: Engine, issued: list[IssuedTokens], standin: TikTokStandIn) -> list[str]:
    """Every token TikTok ever issued and every ciphertext in the database."""
    with engine.connect() as connection:
        stored = connection.execute(
            text("SELECT access_token_ciphertext, refresh_token_ciphertext FROM accounts")
        ).all()
    values = [value for pair in stored for value in pair if value]
    values += [t.access_token for t in issued] + [t.refresh_token for t in issued]
    return values + standin.issued_tokens


# ----------------------------------------------------------------------------- list


def test_list_without_accounts(cli: Cli) -> None:
    result = cli("accounts", "list")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "No accounts.\n"
    as_json = cli("accounts", "list", "--json")
    assert as_json.exit_code == 0, as_json.stderr
    assert as_json.json() == {"accounts": []}


def test_list_plain_text(
    cli: Cli, add_accounts: AddAccounts, engine: Engine, standin: TikTokStandIn
) -> None:
    issued = add_accounts(2, label="Shop")
    set_account(engine, "user1", last_error="refresh failed: HTTP 503")
    result = cli("accounts", "list")
    assert result.exit_code == 0, result.stderr
    title, *lines = result.stdout.splitlines()
    assert title == "2 account(s):"
    assert cells(lines[0]) == [
        "id",
        "open_id",
        "label",
        "status",
        "access expires",
        "refresh expires",
        "last error",
    ]
    assert len(lines) == 3
    rows = [cells(line) for line in lines[1:]]
    assert [r[:4] for r in rows] == [
        [str(account(engine, "user0")["id"]), "user0", "Shop", "active"],
        [str(account(engine, "user1")["id"]), "user1", "Shop", "active"],
    ]
    for r in rows:
        assert re.fullmatch(r"in 1h\d+m|in 2h", r[4]), r
        assert re.fullmatch(r"in 17\dd\d+h|in 180d", r[5]), r
    assert rows[0][6:] == []
    assert rows[1][6] == "refresh failed: HTTP 503"
    assert_no_secret(result.stdout + result.stderr, *secrets_of(engine, issued, standin))


def test_list_json_shape(
    cli: Cli,
    add_accounts: AddAccounts,
    engine: Engine,
    repository: Repository,
    standin: TikTokStandIn,
) -> None:
    issued = add_accounts(2, label="Brand")
    result = cli("accounts", "list", "--json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert set(data) == {"accounts"}
    assert [a["open_id"] for a in data["accounts"]] == ["user0", "user1"]
    for shown in data["accounts"]:
        assert set(shown) == ACCOUNT_KEYS
        stored = repository.find_account(shown["open_id"])
        assert stored is not None
        assert shown["id"] == stored.id
        assert shown["label"] == "Brand"
        assert shown["status"] == "active"
        assert shown["scope"] == standin.scope
        assert shown["has_tokens"] is True
        assert shown["last_refreshed_at"] is None
        assert shown["last_error"] is None
        assert shown["consecutive_failures"] == 0
        for name in ("access_expires_at", "refresh_expires_at", "created_at", "updated_at"):
            assert TIMESTAMP.match(shown[name]), (name, shown[name])
        assert shown["access_expires_at"] == stored.access_expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert shown["refresh_expires_at"] == stored.refresh_expires_at.strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
    assert_no_secret(result.stdout + result.stderr, *secrets_of(engine, issued, standin))


def test_list_status_filter(cli: Cli, add_accounts: AddAccounts, engine: Engine) -> None:
    add_accounts(4)
    set_account(engine, "user1", status=AccountStatus.EXPIRED.value)
    set_account(engine, "user2", status=AccountStatus.DISABLED.value)

    def listed(*args: str) -> list[str]:
        result = cli("accounts", "list", "--json", *args)
        assert result.exit_code == 0, result.stderr
        return [a["open_id"] for a in result.json()["accounts"]]

    assert listed() == ["user0", "user1", "user2", "user3"]
    assert listed("--status", "active") == ["user0", "user3"]
    assert listed("--status", "expired") == ["user1"]
    assert listed("--status", "disabled") == ["user2"]

    plain = cli("accounts", "list", "--status", "disabled")
    assert plain.exit_code == 0, plain.stderr
    assert plain.stdout.splitlines()[0] == "1 account(s):"
    assert [line.split()[1] for line in plain.stdout.splitlines()[2:]] == ["user2"]


def test_list_with_an_unknown_status_is_a_usage_error(cli: Cli, add_accounts: AddAccounts) -> None:
    add_accounts(1)
    result = cli("accounts", "list", "--status", "paused")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Invalid value for '--status'" in result.stderr
    assert "'paused' is not one of" in result.stderr


# ----------------------------------------------------------------------------- show


def parse_fields(stdout: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in stdout.split("\n\n", 1)[0].splitlines():
        name, _, value = line.partition("  ")
        fields[name] = value.strip()
    return fields


def test_show_plain_text(
    cli: Cli, add_accounts: AddAccounts, engine: Engine, standin: TikTokStandIn
) -> None:
    issued = add_accounts(1, label="Shop A")
    the_id = account(engine, "user0")["id"]
    result = cli("accounts", "show", str(the_id))
    assert result.exit_code == 0, result.stderr
    fields = parse_fields(result.stdout)
    assert set(fields) == ACCOUNT_KEYS
    assert fields["id"] == str(the_id)
    assert fields["open_id"] == "user0"
    assert fields["label"] == "Shop A"
    assert fields["status"] == "active"
    assert fields["has_tokens"] == "True"
    assert fields["last_error"] == ""
    assert result.stdout.endswith("\n\nNo refresh attempts recorded.\n")

    refreshed = cli("refresh", "--window", "3h")
    assert refreshed.exit_code == 0, refreshed.stderr
    after = cli("accounts", "show", str(the_id))
    assert after.exit_code == 0, after.stderr
    assert TIMESTAMP.match(parse_fields(after.stdout)["last_refreshed_at"])
    title, *table = after.stdout.split("\n\n", 1)[1].splitlines()
    assert title == "Recent refresh attempts:"
    assert cells(table[0]) == ["when", "outcome", "http", "error", "log_id", "ms", "message"]
    assert len(table) == 2
    assert " refreshed " in table[1]
    assert_no_secret(
        result.stdout + after.stdout + after.stderr, *secrets_of(engine, issued, standin)
    )


def test_show_json_lists_attempts_after_refreshes(
    cli: Cli, add_accounts: AddAccounts, engine: Engine, standin: TikTokStandIn
) -> None:
    issued = add_accounts(2)
    first = cli("refresh", "--window", "3h", "--json")
    assert first.exit_code == 0, first.stderr
    first_run = first.json()["run_id"]
    # The second refresh of user0 is rejected: the account expires, the attempt says why.
    standin.script(tiktok_error("invalid_grant", description="revoked"), open_id="user0")
    user0 = account(engine, "user0")["id"]
    second = cli("refresh", "--account-id", str(user0), "--json")
    assert second.exit_code == 1, second.stdout + second.stderr
    second_run = second.json()["run_id"]

    result = cli("accounts", "show", str(user0), "--json")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert set(data) == {"account", "attempts"}
    assert set(data["account"]) == ACCOUNT_KEYS
    assert data["account"]["id"] == user0
    assert data["account"]["status"] == "expired"
    assert TIMESTAMP.match(data["account"]["last_refreshed_at"])
    attempts = data["attempts"]
    assert [set(attempt) for attempt in attempts] == [ATTEMPT_KEYS, ATTEMPT_KEYS]
    newest, oldest = attempts
    assert (newest["run_id"], newest["outcome"], newest["error_code"]) == (
        second_run,
        "expired",
        "invalid_grant",
    )
    assert newest["log_id"]
    assert (oldest["run_id"], oldest["outcome"], oldest["http_status"]) == (
        first_run,
        "refreshed",
        200,
    )
    assert oldest["error_code"] is None
    assert all(isinstance(a["duration_ms"], int) and a["duration_ms"] >= 0 for a in attempts)

    limited = cli("accounts", "show", str(user0), "--json", "--attempts", "1")
    assert [a["run_id"] for a in limited.json()["attempts"]] == [second_run]
    none = cli("accounts", "show", str(user0), "--json", "--attempts", "0")
    assert none.json()["attempts"] == []
    other = cli("accounts", "show", str(account(engine, "user1")["id"]), "--json")
    assert [a["outcome"] for a in other.json()["attempts"]] == ["refreshed"]

    output = result.stdout + limited.stdout + other.stdout + result.stderr
    assert_no_secret(output, *secrets_of(engine, issued, standin))


def test_show_unknown_id(cli: Cli, add_accounts: AddAccounts) -> None:
    add_accounts(1)
    result = cli("accounts", "show", "999")
    assert_refused(result, 2, "error: no account with id 999\n")


# ----------------------------------------------------------------------------- token


def test_token_prints_exactly_the_access_token(
    cli: Cli, add_accounts: AddAccounts, engine: Engine
) -> None:
    issued = add_accounts(2)
    by_id = cli("accounts", "token", str(account(engine, "user1")["id"]))
    assert by_id.exit_code == 0, by_id.stderr
    assert by_id.stdout == issued[1].access_token + "\n"
    assert by_id.stderr == ""
    by_open_id = cli("accounts", "token", "--open-id", "user0")
    assert by_open_id.exit_code == 0, by_open_id.stderr
    assert by_open_id.stdout == issued[0].access_token + "\n"
    assert by_open_id.stderr == ""


def test_token_after_a_refresh_is_the_new_one(
    cli: Cli, add_accounts: AddAccounts, standin: TikTokStandIn
) -> None:
    issued = add_accounts(1)
    refreshed = cli("refresh", "--window", "3h")
    assert refreshed.exit_code == 0, refreshed.stderr
    newest_access = [t for t in standin.issued_tokens if t.startswith("act.")][-1]
    assert newest_access != issued[0].access_token
    result = cli("accounts", "token", "--open-id", "user0")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == newest_access + "\n"


PAST = datetime(2020, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"status": AccountStatus.EXPIRED.value}, RECONNECT_MESSAGES["expired"]),
        ({"status": AccountStatus.DISABLED.value}, RECONNECT_MESSAGES["disabled"]),
        ({"status": AccountStatus.REVOKED.value}, RECONNECT_MESSAGES["revoked"]),
        ({"refresh_token_ciphertext": None}, RECONNECT_MESSAGES["no_refresh_token"]),
        ({"refresh_expires_at": PAST}, RECONNECT_MESSAGES["refresh_token_expired"]),
    ],
    ids=["expired", "disabled", "revoked", "no-refresh-token", "refresh-token-past-expiry"],
)
def test_token_refuses_an_account_without_a_usable_token(
    cli: Cli,
    add_accounts: AddAccounts,
    engine: Engine,
    standin: TikTokStandIn,
    state: dict[str, Any],
    message: str,
) -> None:
    issued = add_accounts(1)
    set_account(engine, "user0", **state)
    the_id = account(engine, "user0")["id"]
    for args in ([str(the_id)], ["--open-id", "user0"]):
        result = cli("accounts", "token", *args)
        assert_refused(result, 1, f"error: account {the_id} (user0) {message}\n")
        assert_no_secret(result.stderr, *secrets_of(engine, issued, standin))
    assert standin.received == []


@pytest.mark.parametrize(
    "state",
    [{"access_expires_at": PAST}, {"access_token_ciphertext": None}],
    ids=["access-token-expired", "no-stored-access-token"],
)
def test_token_without_a_usable_access_token_is_refreshed_first(
    cli: Cli,
    env: dict[str, str],
    add_accounts: AddAccounts,
    engine: Engine,
    standin: TikTokStandIn,
    state: dict[str, Any],
) -> None:
    issued = add_accounts(1)
    set_account(engine, "user0", **state)
    result = cli("accounts", "token", "--open-id", "user0")
    assert result.exit_code == 0, result.stderr
    [sent] = standin.received
    assert sent.form["refresh_token"] == issued[0].refresh_token
    access, refresh = stored_tokens(engine, "user0", env["TOKENREFRESH_ENCRYPTION_KEYS"])
    assert result.stdout == f"{access}\n"
    assert refresh == standin.current_refresh_token("user0")


def test_token_of_an_account_about_to_expire_is_still_given(
    cli: Cli, add_accounts: AddAccounts, engine: Engine
) -> None:
    issued = add_accounts(1)
    set_account(engine, "user0", access_expires_at=utcnow() + timedelta(minutes=10))
    result = cli("accounts", "token", "--open-id", "user0")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == issued[0].access_token + "\n"


def test_token_of_an_unknown_account(cli: Cli, add_accounts: AddAccounts) -> None:
    add_accounts(1)
    by_id = cli("accounts", "token", "999")
    assert_refused(by_id, 2, "error: no account with id 999\n")
    by_open_id = cli("accounts", "token", "--open-id", "nobody")
    assert_refused(by_open_id, 2, "error: no account with open_id 'nobody'\n")


@pytest.mark.parametrize("args", [["1", "--open-id", "user0"], []], ids=["both", "neither"])
def test_token_needs_exactly_one_of_id_and_open_id(
    cli: Cli, add_accounts: AddAccounts, args: list[str]
) -> None:
    add_accounts(1)
    result = cli("accounts", "token", *args)
    assert_refused(result, 2, "error: give an account (id or open_id) or --open-id, not both\n")


# ----------------------------------------------------------------------------- remove


def test_remove_needs_yes_when_not_interactive(
    cli: Cli, add_accounts: AddAccounts, engine: Engine
) -> None:
    add_accounts(1)
    before = snapshot(engine)
    result = cli("accounts", "remove", str(account(engine, "user0")["id"]), input="y\n")
    assert_refused(result, 2, "error: removing an account needs --yes when not run interactively\n")
    assert snapshot(engine) == before


@pytest.mark.parametrize("flag", ["--yes", "-y"])
def test_remove_deletes_the_account_and_its_attempts(
    cli: Cli, add_accounts: AddAccounts, engine: Engine, flag: str
) -> None:
    add_accounts(2)
    refreshed = cli("refresh", "--window", "3h")
    assert refreshed.exit_code == 0, refreshed.stderr
    gone, kept = account(engine, "user0")["id"], account(engine, "user1")["id"]
    assert len(attempts(engine, gone)) == 1
    assert len(attempts(engine, kept)) == 1
    kept_row = account(engine, "user1")

    result = cli("accounts", "remove", str(gone), flag)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"Removed account {gone} (user0).\n"
    with engine.connect() as connection:
        ids = connection.execute(text("SELECT id FROM accounts ORDER BY id")).scalars().all()
    assert ids == [kept]
    assert len(attempts(engine, gone)) == 0
    assert len(attempts(engine, kept)) == 1
    assert account(engine, "user1") == kept_row

    again = cli("accounts", "show", str(gone))
    assert again.exit_code == 2
    assert again.stderr == f"error: no account with id {gone}\n"


@pytest.mark.parametrize("args", [["--yes"], []], ids=["yes", "no-yes"])
def test_remove_unknown_id(
    cli: Cli, add_accounts: AddAccounts, engine: Engine, args: list[str]
) -> None:
    add_accounts(1)
    before = snapshot(engine)
    result = cli("accounts", "remove", "999", *args)
    assert_refused(result, 2, "error: no account with id 999\n")
    assert snapshot(engine) == before


# ----------------------------------------------------------------------------- disable, enable


def test_disable_and_enable(cli: Cli, add_accounts: AddAccounts, engine: Engine) -> None:
    add_accounts(2)
    the_id = account(engine, "user0")["id"]
    other_before = account(engine, "user1")

    disabled = cli("accounts", "disable", str(the_id))
    assert disabled.exit_code == 0, disabled.stderr
    assert disabled.stdout == f"Account {the_id} (user0) is disabled.\n"
    assert account(engine, "user0")["status"] == "disabled"

    set_account(engine, "user0", consecutive_failures=4, last_error="refresh failed: HTTP 503")
    enabled = cli("accounts", "enable", str(the_id))
    assert enabled.exit_code == 0, enabled.stderr
    assert enabled.stdout == f"Account {the_id} (user0) is active.\n"
    after = account(engine, "user0")
    assert after["status"] == "active"
    assert after["consecutive_failures"] == 0
    assert after["last_error"] is None
    assert account(engine, "user1") == other_before


@pytest.mark.parametrize("command", ["disable", "enable"])
def test_disable_or_enable_unknown_id(
    cli: Cli, add_accounts: AddAccounts, engine: Engine, command: str
) -> None:
    add_accounts(1)
    before = snapshot(engine)
    result = cli("accounts", command, "999")
    assert_refused(result, 2, "error: no account with id 999\n")
    assert snapshot(engine) == before


def test_a_disabled_account_is_not_refreshed(
    cli: Cli, add_accounts: AddAccounts, engine: Engine, standin: TikTokStandIn
) -> None:
    issued = add_accounts(2)
    the_id = account(engine, "user0")["id"]
    assert cli("accounts", "disable", str(the_id)).exit_code == 0
    disabled_row = account(engine, "user0")

    result = cli("refresh", "--window", "3h", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["counts"] == counts(refreshed=1)
    presented = [request.form.get("refresh_token") for request in standin.received]
    assert presented == [issued[1].refresh_token]
    assert account(engine, "user0") == disabled_row
    assert len(attempts(engine, the_id)) == 0

    assert cli("accounts", "enable", str(the_id)).exit_code == 0
    again = cli("refresh", "--window", "3h", "--json")
    assert again.exit_code == 0, again.stderr
    assert again.json()["counts"]["refreshed"] == 2  # user0, and user1 (due again at 3h)
    assert standin.presented()[issued[0].refresh_token] == 1
    assert account(engine, "user0")["token_generation"] == 2
