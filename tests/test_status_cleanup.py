"""`status` and `cleanup` on SQLite and PostgreSQL: the numbers and what changes."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func, insert, select

from conftest import Cli
from helpers import account, counts, set_account
from receiver import closed_port
from standin import TikTokStandIn
from tokenrefresh.storage.models import Account, Attempt, Run


def test_status_counts_expiry_and_reconnects(
    cli: Cli, engine: Engine, add_accounts: Callable[..., list]
) -> None:
    add_accounts(4)
    now = datetime.now(UTC)
    set_account(engine, "user0", access_expires_at=now - timedelta(minutes=5))  # overdue
    set_account(engine, "user1", access_expires_at=now + timedelta(minutes=30))  # in window
    set_account(engine, "user2", status="expired", last_error="TikTok rejected the refresh token")
    set_account(engine, "user3", status="disabled")

    result = cli("status", "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["accounts"] == {
        "active": 2,
        "expired": 1,
        "disabled": 1,
        "revoked": 0,
        "total": 4,
    }
    assert report["access_tokens"]["overdue"] == 1
    assert report["access_tokens"]["expiring_within_window"] == 1
    assert report["window_seconds"] == 5400
    soonest = datetime.fromisoformat(report["access_tokens"]["soonest_expiry"])
    assert abs(soonest - (now - timedelta(minutes=5))) < timedelta(seconds=2)
    assert report["reconnect_needed"]["count"] == 1
    assert [entry["open_id"] for entry in report["reconnect_needed"]["accounts"]] == ["user2"]
    assert report["last_runs"] == {"refresh": None, "cleanup": None}

    plain = cli("status")
    assert plain.exit_code == 0
    assert "Active accounts with an expired access token (overdue): 1" in plain.stdout
    assert "1 account(s) need their user to reconnect" in plain.stdout
    assert "Last refresh: never" in plain.stdout


def test_status_says_when_no_key_is_configured(cli: Cli, add_accounts: Callable[..., list]) -> None:
    """Issue 18: `status` run without the cron job's keys file must not look healthy."""
    add_accounts(1)
    without_keys = {"TOKENREFRESH_ENCRYPTION_KEYS": None}

    plain = cli("status", env=without_keys)
    as_json = cli("status", "--json", env=without_keys)

    assert (plain.exit_code, as_json.exit_code) == (0, 0)
    assert (
        "\nKeys: none configured (TOKENREFRESH_ENCRYPTION_KEYS): tokens cannot be read or "
        "refreshed\n" in plain.stdout
    )
    assert as_json.json()["keys_configured"] is False
    assert "Keys:" not in cli("status").stdout
    assert cli("status", "--json").json()["keys_configured"] is True


def test_status_shows_the_last_run_of_each_command(
    cli: Cli, add_accounts: Callable[..., list]
) -> None:
    add_accounts(2)
    assert cli("refresh", "--window", "3h", "-q").exit_code == 0
    assert cli("cleanup", "-q").exit_code == 0
    runs = cli("status", "--json").json()["last_runs"]
    assert runs["refresh"]["outcome"] == "ok"
    assert runs["refresh"]["exit_code"] == 0
    assert runs["refresh"]["counts"] == counts(refreshed=2)
    assert runs["cleanup"]["outcome"] == "ok"
    assert runs["cleanup"]["finished_at"] is not None


def test_status_calls_events_an_audit_trail_when_no_target_is_configured(
    cli: Cli, add_accounts: Callable[..., list], standin: TikTokStandIn
) -> None:
    add_accounts(2)
    standin.revoke("user0")
    assert cli("refresh", "--window", "3h", "-q").exit_code == 1  # records account.expired
    plain = cli("status")
    assert plain.exit_code == 0, plain.stderr
    assert (
        "Events recorded: 1 (no webhook or notify target configured: kept as an audit trail)\n"
        in plain.stdout
    )
    assert "not delivered yet" not in plain.stdout
    with closed_port() as port:
        secret = "whsec_" + base64.b64encode(bytes(range(32))).decode()
        hooked = {
            "TOKENREFRESH_WEBHOOK_URL": f"http://127.0.0.1:{port}/hooks",
            "TOKENREFRESH_WEBHOOK_SECRET": secret,
        }
        configured = cli("status", env=hooked)
    assert configured.exit_code == 0, configured.stderr
    assert "Events not delivered yet: 1 (the oldest since " in configured.stdout
    assert "audit trail" not in configured.stdout


def test_cleanup_expires_erases_and_prunes(
    cli: Cli, engine: Engine, add_accounts: Callable[..., list], standin: TikTokStandIn
) -> None:
    add_accounts(4)
    now = datetime.now(UTC)
    set_account(engine, "user0", refresh_expires_at=now - timedelta(seconds=1))
    set_account(engine, "user1", status="expired", last_error="rejected")
    old = now - timedelta(days=40)
    with engine.begin() as connection:
        user3 = connection.execute(
            select(Account.id).where(Account.open_id == "user3")
        ).scalar_one()
        run_ids = [
            connection.execute(
                insert(Run)
                .values(
                    command="refresh",
                    host="h",
                    pid=1,
                    started_at=started,
                    finished_at=started,
                    outcome="ok",
                    exit_code=0,
                    counts="{}",
                )
                .returning(Run.id)
            ).scalar_one()
            for started in (old, old + timedelta(hours=1))
        ]
        connection.execute(
            insert(Attempt),
            [
                {
                    "account_id": user3,
                    "run_id": run_ids[0],
                    "attempted_at": old,
                    "outcome": "refreshed",
                    "duration_ms": 5,
                },
                {
                    "account_id": user3,
                    "run_id": None,
                    "attempted_at": now,
                    "outcome": "refreshed",
                    "duration_ms": 5,
                },
            ],
        )

    expected = {
        "expired": 1,
        "tokens_erased": 2,
        "attempts_pruned": 1,
        "runs_pruned": 1,
        "events_pruned": 0,
    }
    dry = cli("cleanup", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.stderr
    assert dry.json()["counts"] == expected
    assert account(engine, "user0")["status"] == "active"  # the dry run changed nothing

    result = cli("cleanup", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["counts"] == expected  # what the dry run said, done
    assert [entry["open_id"] for entry in result.json()["expired"]] == ["user0"]
    for open_id in ("user0", "user1"):
        row = account(engine, open_id)
        assert row["status"] == "expired"
        assert row["access_token_ciphertext"] is None
        assert row["refresh_token_ciphertext"] is None
    assert "refresh token passed its expiry" in str(account(engine, "user0")["last_error"])
    assert account(engine, "user2")["refresh_token_ciphertext"] is not None
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(Attempt)).scalar_one() == 1
        # The newest run of each command stays, however old: `status` shows it.
        commands = connection.execute(select(Run.command, Run.id)).all()
    assert ("refresh", run_ids[1]) in [tuple(row) for row in commands]
    assert ("refresh", run_ids[0]) not in [tuple(row) for row in commands]

    # An erased account has nothing to refresh or hand out.
    token = cli("accounts", "token", "--open-id", "user0")
    assert token.exit_code == 1
    assert token.stdout == ""
    assert "expired" in token.stderr
    assert standin.received == []


def test_an_account_past_its_refresh_expiry_needs_its_user_not_the_refresh(
    cli: Cli, engine: Engine, add_accounts: Callable[..., list]
) -> None:
    add_accounts(2)
    assert cli("refresh", "--window", "3h", "-q").exit_code == 0
    now = datetime.now(UTC)
    set_account(
        engine,
        "user0",
        access_expires_at=now - timedelta(hours=1),
        refresh_expires_at=now - timedelta(minutes=1),
    )
    report = cli("status", "--json").json()
    # Not overdue: no refresh can help it. Its user must reconnect, before cleanup runs too.
    assert report["access_tokens"]["overdue"] == 0
    assert report["refresh_tokens"]["past_expiry"] == 1
    assert report["reconnect_needed"]["count"] == 1
    assert [entry["open_id"] for entry in report["reconnect_needed"]["accounts"]] == ["user0"]
    check = cli("status", "--check")
    assert check.exit_code == 1
    assert check.stdout == "WARNING: 1 account(s) need their user to reconnect\n"


def test_status_with_limit_0_gives_the_count_without_an_empty_table(
    cli: Cli, engine: Engine, add_accounts: Callable[..., list]
) -> None:
    add_accounts(2)
    set_account(engine, "user0", status="expired", last_error="TikTok rejected it")
    result = cli("status", "--limit", "0")
    assert result.exit_code == 0, result.stderr
    assert "1 account(s) need their user to reconnect.\n" in result.stdout
    assert "open_id" not in result.stdout  # no table header
    listed = cli("status", "--limit", "5")
    assert "user0" in listed.stdout
