"""The main job, end to end through the CLI, on SQLite and PostgreSQL: a refresh, the dry run,
`--account-id`, exit codes and `-q`, and the runs it records. (Failures of TikTok or the
network: test_refresh_failures.py.)"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, select, text

from conftest import Cli, CliResult
from helpers import (
    AddAccounts,
    account,
    all_rows,
    assert_no_secret,
    counts,
    runs,
    sqlite_files,
    stored_tokens,
)
from standin import TikTokStandIn
from tokenrefresh.storage.models import Account, Attempt
from tokenrefresh.storage.records import AccountStatus
from tokenrefresh.storage.repository import Repository

WINDOW = ("--window", "3h")  # the stand-in's tokens live 2 h: all due


def assert_no_tokens(standin: TikTokStandIn, *outputs: CliResult | str | None) -> None:
    """No token TikTok issued, nor the client secret, in any of the outputs."""
    assert_no_secret(list(outputs), *standin.issued_tokens, standin.client_secret)


def test_refresh_rotates_and_stores_every_due_account(
    cli: Cli, standin: TikTokStandIn, add_accounts, engine: Engine, fernet_key: str
) -> None:
    issued = add_accounts(3)
    result = cli("refresh", "--window", "3h", "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["counts"] == counts(refreshed=3)
    for tokens in issued:
        assert standin.presented()[tokens.refresh_token] == 1
    token = cli("accounts", "token", "--open-id", "user0")
    assert token.exit_code == 0
    assert token.stdout.startswith("act.")

    # What is stored is what TikTok issued last: the next refresh presents exactly that
    # token, once, and it works.
    newest = {}
    for tokens in issued:
        newest[tokens.open_id] = standin.current_refresh_token(tokens.open_id)
        assert newest[tokens.open_id] not in (None, tokens.refresh_token)
        assert stored_tokens(engine, tokens.open_id, fernet_key)[1] == newest[tokens.open_id]
    standin.reset_log()
    again = cli("refresh", "--window", "3h", "--json")
    assert again.json()["counts"]["refreshed"] == 3
    assert standin.presented() == dict.fromkeys(newest.values(), 1)


# ----------------------------------------------------------------------------- (i) dry run


def test_dry_run_lists_due_accounts_calls_nothing_writes_nothing(
    cli: Cli,
    standin: TikTokStandIn,
    add_accounts: AddAccounts,
    engine: Engine,
    database_url: str,
) -> None:
    add_accounts(2, label="shop")
    add_accounts(1, prefix="later", expires_in=86_400)
    rows_before = all_rows(engine)
    files_before = sqlite_files(engine)

    result = cli("refresh", *WINDOW, "--dry-run", "--json")

    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert set(report) == {"command", "dry_run", "started_at", "count", "would_refresh"}
    assert (report["command"], report["dry_run"], report["count"]) == ("refresh", True, 2)
    listed = report["would_refresh"]
    assert [item["open_id"] for item in listed] == ["user0", "user1"]
    by_open_id = {row["open_id"]: row for row in rows_before["accounts"]}
    for item in listed:
        assert set(item) == {"account_id", "open_id", "label", "access_expires_at", "reason"}
        assert item["account_id"] == by_open_id[item["open_id"]]["id"]
        assert item["label"] == "shop"
        assert item["reason"].startswith("access token expires in 1h59m")
    assert standin.received == []
    assert all_rows(engine) == rows_before
    assert sqlite_files(engine) == files_before

    plain = cli("refresh", *WINDOW, "--dry-run")
    assert plain.exit_code == 0
    shown = plain.stdout.splitlines()
    headers = [line for line in shown if line.split()[:2] == ["id", "open_id"]]
    assert [header.split() for header in headers] == [
        ["id", "open_id", "label", "access", "expires", "why"]
    ]
    rows = shown[shown.index(headers[0]) + 1 :]
    assert [row.split()[1] for row in rows] == ["user0", "user1"]
    assert all("access token expires in 1h59m" in row for row in rows)

    explicit = cli(
        "refresh", "--dry-run", "--json", "--account-id", str(by_open_id["later0"]["id"])
    )
    [item] = explicit.json()["would_refresh"]
    assert item["reason"] == "requested with --account-id (status active)"

    assert standin.received == []
    assert all_rows(engine) == rows_before
    assert sqlite_files(engine) == files_before
    assert_no_tokens(standin, result, plain, explicit)


# ----------------------------------------------------------------------------- (j) --account-id


def test_account_id_refreshes_it_whatever_its_expiry_or_status(
    cli: Cli,
    standin: TikTokStandIn,
    add_accounts: AddAccounts,
    engine: Engine,
    repository: Repository,
) -> None:
    [not_due] = add_accounts(1, prefix="later", expires_in=86_400)
    [expired] = add_accounts(1, prefix="gone")
    not_due_id = account(engine, "later0")["id"]
    expired_id = account(engine, "gone0")["id"]
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE accounts SET status = 'expired' WHERE id = :id"), {"id": expired_id}
        )
    # Nothing is due in the normal sense.
    assert cli("refresh", "--dry-run", "--json").json()["count"] == 0

    result = cli(
        "refresh", "--account-id", str(not_due_id), "--account-id", str(expired_id), "--json"
    )

    assert result.exit_code == 0, result.stderr
    assert result.json()["counts"] == counts(refreshed=2)
    assert standin.presented()[not_due.refresh_token] == 1
    assert standin.presented()[expired.refresh_token] == 1
    assert account(engine, "later0")["token_generation"] == 2
    revived = account(engine, "gone0")
    assert revived["token_generation"] == 2
    assert revived["status"] == AccountStatus.ACTIVE


@pytest.mark.parametrize("concurrency", ["1", "8"])
def test_repeated_account_id_is_refreshed_once(
    cli: Cli, standin: TikTokStandIn, add_accounts: AddAccounts, engine: Engine, concurrency: str
) -> None:
    [tokens] = add_accounts(1)
    account_id = str(account(engine, "user0")["id"])

    result = cli(
        "refresh",
        *("--account-id", account_id) * 3,
        "--concurrency",
        concurrency,
        "--json",
    )

    assert result.exit_code == 0, result.stdout
    # A refresh token is single use: presenting it twice in flight gets one invalid_grant, and
    # refreshing again after success rotates the pair for nothing.
    assert standin.presented()[tokens.refresh_token] == 1
    assert len(standin.received) == 1
    assert standin.refresh_count("user0") == 1
    assert result.json()["counts"] == counts(refreshed=1)
    row = account(engine, "user0")
    assert row["status"] == AccountStatus.ACTIVE
    assert row["token_generation"] == 2


def test_unknown_account_id_refreshes_nothing(
    cli: Cli, standin: TikTokStandIn, add_accounts: AddAccounts, engine: Engine
) -> None:
    add_accounts(1)
    known = str(account(engine, "user0")["id"])
    before = all_rows(engine)

    result = cli("refresh", "--account-id", "999")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == "error: no account with id 999\n"

    mixed = cli("refresh", "--account-id", known, "--account-id", "999", "--account-id", "998")
    assert mixed.exit_code == 2
    assert mixed.stderr == "error: no accounts with ids 998, 999\n"

    assert standin.received == []
    assert all_rows(engine) == before


# ----------------------------------------------------------------------------- (k), (l) exit, -q


def test_exit_0_when_nothing_is_due_or_all_refreshed(
    cli: Cli, standin: TikTokStandIn, add_accounts: AddAccounts
) -> None:
    empty = cli("refresh")
    assert empty.exit_code == 0
    assert empty.stdout == "Nothing to refresh: no account is due.\n"

    add_accounts(2)
    not_due = cli("refresh", "--window", "1h")
    assert not_due.exit_code == 0
    assert not_due.stdout == "Nothing to refresh: no account is due.\n"
    assert standin.received == []

    done = cli("refresh", *WINDOW)
    assert done.exit_code == 0
    assert done.stdout.startswith("Refreshed 2 of 2 account(s): 0 expired, 0 failed, 0 skipped")
    assert standin.refresh_count() == 2


def test_quiet_prints_nothing_on_success_and_the_summary_on_failure(
    cli: Cli, standin: TikTokStandIn, add_accounts: AddAccounts, engine: Engine
) -> None:
    add_accounts(2)
    quiet_ok = cli("refresh", *WINDOW, "-q")
    assert quiet_ok.exit_code == 0
    assert (quiet_ok.stdout, quiet_ok.stderr) == ("", "")
    assert standin.refresh_count() == 2

    [failing] = add_accounts(1, prefix="bad")
    standin.revoke("bad0")
    quiet_failed = cli("refresh", *WINDOW, "-q")
    assert quiet_failed.exit_code == 1
    lines = quiet_failed.stdout.splitlines()
    # --window 3h takes the 2-hour tokens refreshed a moment ago again, and the bad one.
    assert lines[0].startswith("Refreshed 2 of 3 account(s): 1 expired, 0 failed, 0 skipped")
    assert lines[1] == (
        f"  account {account(engine, 'bad0')['id']} (bad0): expired: TikTok rejected the refresh "
        "token: invalid_grant (HTTP 400): Refresh token is invalid or expired."
    )
    assert standin.presented()[failing.refresh_token] == 1
    assert len(lines) == 3  # the summary, the account, the advice to reconnect
    assert quiet_failed.stderr == ""
    assert_no_tokens(standin, quiet_ok, quiet_failed)


# ----------------------------------------------------------------------------- (m) runs


def test_runs_are_recorded_and_shown_by_status(
    cli: Cli, standin: TikTokStandIn, add_accounts: AddAccounts, engine: Engine
) -> None:
    add_accounts(3)
    standin.revoke("user2")
    before = datetime.now(UTC)

    result = cli("refresh", *WINDOW, "--json")

    assert result.exit_code == 1
    report = result.json()
    [run] = runs(engine)
    assert report["run_id"] == run["id"]
    assert run["command"] == "refresh"
    assert run["outcome"] == "failures"
    assert run["exit_code"] == 1
    assert run["counts"] == counts(refreshed=2, expired=1)
    assert before <= run["started_at"] <= run["finished_at"]
    assert run["host"]
    assert run["pid"] > 0
    assert run["message"] is None
    with engine.connect() as connection:
        run_ids = set(connection.execute(select(Attempt.run_id)).scalars())
    assert run_ids == {run["id"]}

    status = cli("status", "--json")
    assert status.exit_code == 0, status.stderr
    shown = status.json()
    last = shown["last_runs"]["refresh"]
    assert last["id"] == run["id"]
    assert last["outcome"] == "failures"
    assert last["exit_code"] == 1
    assert last["counts"] == counts(refreshed=2, expired=1)
    # Its only problem is a user to reconnect: a successful run for monitoring (issue 18).
    assert shown["last_successful_runs"]["refresh"]["id"] == run["id"]
    assert shown["reconnect_needed"]["count"] == 1
    assert shown["reconnect_needed"]["accounts"][0]["open_id"] == "user2"

    ok = cli("refresh", *WINDOW, "--json")  # the two active accounts are due again within 3h
    assert ok.exit_code == 0
    shown = cli("status", "--json").json()
    assert shown["last_runs"]["refresh"]["id"] == ok.json()["run_id"]
    assert shown["last_runs"]["refresh"]["outcome"] == "ok"
    assert shown["last_runs"]["refresh"]["counts"] == counts(refreshed=2)
    assert shown["last_successful_runs"]["refresh"]["id"] == ok.json()["run_id"]
    assert len(runs(engine)) == 2
    assert_no_tokens(standin, result, status, ok)


def test_a_forced_refresh_keeps_a_disabled_account_disabled(
    cli: Cli,
    add_accounts: AddAccounts,
    engine: Engine,
    standin: TikTokStandIn,
) -> None:
    [tokens] = add_accounts(1)
    assert cli("accounts", "disable", "1").exit_code == 0
    result = cli("refresh", "--account-id", "1", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["counts"]["refreshed"] == 1
    assert standin.presented()[tokens.refresh_token] == 1
    with engine.connect() as connection:
        status = connection.execute(select(Account.status).where(Account.id == 1)).scalar_one()
    assert status == AccountStatus.DISABLED


def test_a_dry_run_for_named_accounts_calls_nothing_and_writes_nothing(
    cli: Cli, standin: TikTokStandIn, add_accounts: AddAccounts, engine: Engine
) -> None:
    add_accounts(3, expires_in=86_400)  # not due: only named
    tables = ("accounts", "runs", "refresh_attempts", "key_check", "spent_refresh_tokens")

    def everything() -> dict[str, list[tuple[object, ...]]]:
        with engine.connect() as connection:
            return {
                name: [tuple(r) for r in connection.execute(text(f"SELECT * FROM {name}"))]
                for name in tables
            }

    before = everything()
    result = cli("refresh", "--dry-run", "--account-id", "3", "--account-id", "1", "--json")

    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert [(p["account_id"], p["reason"]) for p in report["would_refresh"]] == [
        (3, "requested with --account-id (status active)"),
        (1, "requested with --account-id (status active)"),
    ]
    assert standin.received == []
    assert everything() == before
