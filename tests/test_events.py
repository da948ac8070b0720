"""Events are recorded in the outbox with the change they describe: the right ones, once,
none when nothing changed, and never a fragment of a secret in a payload.

Real runs of the CLI against the loopback stand-in, on SQLite and PostgreSQL; what is
asserted is the outbox itself (delivery is tested in test_webhooks.py).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, update

from conftest import Cli
from helpers import AddAccounts, account, assert_no_secret, set_account, table
from standin import TikTokStandIn, tiktok_error
from tokenrefresh.base.defaults import FAILING_AFTER
from tokenrefresh.storage.models import OutboxEvent

REDIRECT = "https://app.example/tiktok/callback"


def events(engine: Engine, event_type: str | None = None) -> list[dict[str, Any]]:
    """The outbox rows, oldest first, with their payloads parsed."""
    rows = table(engine, "outbox")
    for row in rows:
        row["body"] = json.loads(row["payload"])
    return [row for row in rows if event_type is None or row["type"] == event_type]


def fail_transiently(standin: TikTokStandIn, open_id: str) -> None:
    """Every attempt of the next run for this account answers 503."""
    standin.script(*[tiktok_error("server_error", 503)] * 3, open_id=open_id)


def refresh_only(cli: Cli, account_id: int) -> None:
    result = cli("refresh", "--account-id", str(account_id), "--json")
    assert result.exit_code in (0, 1), result.stderr


# ----------------------------------------------------------------------------- account.expired


def test_a_rejected_account_records_one_expired_event(
    cli: Cli, add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    issued = add_accounts(2, label="Shop Berlin")
    standin.revoke("user0")
    before = datetime.now(UTC).replace(microsecond=0)
    assert cli("refresh", "--window", "3h").exit_code == 1
    [expired] = events(engine)
    body = expired["body"]
    assert expired["type"] == body["type"] == "account.expired"
    assert expired["event_id"].startswith("evt_")
    assert expired["account_id"] == account(engine, "user0")["id"]
    assert set(body) == {"type", "timestamp", "data"}
    assert body["timestamp"].endswith("Z")
    assert datetime.fromisoformat(body["timestamp"]) >= before
    assert body["data"] == {
        "account_id": account(engine, "user0")["id"],
        "open_id": "user0",
        "label": "Shop Berlin",
        "reason": account(engine, "user0")["last_error"],
    }
    assert (expired["delivered_at"], expired["attempts"]) == (None, 0)
    # Nothing new happened in the next run: no event.
    assert cli("refresh", "--window", "3h").exit_code == 0
    assert len(events(engine)) == 1
    assert_no_secret(expired["payload"], *standin.issued_tokens, standin.client_secret)
    assert_no_secret(expired["payload"], *(t.refresh_token for t in issued))


def test_nothing_changed_records_nothing(
    cli: Cli, add_accounts: AddAccounts, engine: Engine
) -> None:
    add_accounts(3)
    assert cli("refresh", "--window", "3h").exit_code == 0
    assert cli("refresh").exit_code == 0
    assert cli("cleanup").exit_code == 0
    assert events(engine) == []


def test_cleanup_announces_accounts_past_their_refresh_expiry(
    cli: Cli, add_accounts: AddAccounts, engine: Engine
) -> None:
    add_accounts(2)
    set_account(engine, "user1", refresh_expires_at=datetime.now(UTC) - timedelta(hours=1))
    assert cli("cleanup").exit_code == 0
    [expired] = events(engine)
    assert expired["body"]["type"] == "account.expired"
    assert expired["body"]["data"]["open_id"] == "user1"
    assert expired["body"]["data"]["reason"] == (
        "the refresh token passed its expiry; the user must reconnect"
    )
    assert account(engine, "user1")["status"] == "expired"
    assert cli("cleanup").exit_code == 0
    assert len(events(engine)) == 1


# ----------------------------------------------------------------------------- failing, recovered


def test_failing_once_per_streak_then_recovered(
    cli: Cli, add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    add_accounts(1)
    the_id = account(engine, "user0")["id"]
    for run in range(1, FAILING_AFTER + 2):
        fail_transiently(standin, "user0")
        refresh_only(cli, the_id)
        failing = events(engine, "account.failing")
        assert len(failing) == (1 if run >= FAILING_AFTER else 0), run
    [failing] = events(engine, "account.failing")
    assert failing["body"]["data"]["consecutive_failures"] == FAILING_AFTER
    assert "503" in failing["body"]["data"]["reason"]
    assert account(engine, "user0")["status"] == "active"
    # A refresh that works: recovered, once.
    refresh_only(cli, the_id)
    [recovered] = events(engine, "account.recovered")
    assert recovered["body"]["data"]["reason"] == "recovered by a refresh that worked"
    refresh_only(cli, the_id)
    assert len(events(engine, "account.recovered")) == 1
    # A new streak warns again.
    for _ in range(FAILING_AFTER):
        fail_transiently(standin, "user0")
        refresh_only(cli, the_id)
    assert len(events(engine, "account.failing")) == 2


def test_fewer_failures_than_the_threshold_record_nothing(
    cli: Cli, add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    add_accounts(1)
    the_id = account(engine, "user0")["id"]
    for _ in range(FAILING_AFTER - 1):
        fail_transiently(standin, "user0")
        refresh_only(cli, the_id)
    refresh_only(cli, the_id)  # and then it works: it was never "failing"
    assert events(engine) == []


def test_a_new_consent_recovers_an_expired_account(
    cli: Cli, add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    add_accounts(1)
    set_account(engine, "user0", status="expired", last_error="TikTok rejected it")
    code = standin.authorize("user0", redirect_uri=REDIRECT)
    assert cli("accounts", "connect", "--redirect-uri", REDIRECT, input=code).exit_code == 0
    [recovered] = events(engine, "account.recovered")
    assert recovered["body"]["data"]["reason"] == "recovered by a new consent"
    assert account(engine, "user0")["status"] == "active"


def test_a_disabled_account_reimported_stays_disabled_and_is_not_recovered(
    cli: Cli, add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    add_accounts(1)
    set_account(engine, "user0", status="disabled")
    code = standin.authorize("user0", redirect_uri=REDIRECT)
    assert cli("accounts", "connect", "--redirect-uri", REDIRECT, input=code).exit_code == 0
    assert account(engine, "user0")["status"] == "disabled"
    assert events(engine) == []


# ----------------------------------------------------------------------------- expiring


def test_a_refresh_token_about_to_run_out_is_announced_once(
    cli: Cli, add_accounts: AddAccounts, engine: Engine
) -> None:
    add_accounts(3)
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(days=10)
    set_account(engine, "user1", refresh_expires_at=soon)
    set_account(engine, "user2", refresh_expires_at=soon + timedelta(days=20))  # not yet
    assert cli("refresh").exit_code == 0
    [expiring] = events(engine)
    assert expiring["body"]["type"] == "account.refresh_token_expiring"
    assert expiring["body"]["data"]["open_id"] == "user1"
    assert expiring["body"]["data"]["refresh_expires_at"] == soon.isoformat().replace("+00:00", "Z")
    assert cli("refresh").exit_code == 0
    assert cli("refresh", "--warn-before", "40d").exit_code == 0  # user2 now, user1 not again
    assert [e["body"]["data"]["open_id"] for e in events(engine)] == ["user1", "user2"]


def test_warn_before_is_a_duration(cli: Cli, add_accounts: AddAccounts) -> None:
    add_accounts(1)
    result = cli("refresh", "--warn-before", "soon")
    assert result.exit_code == 2
    assert "--warn-before" in result.stderr


# ----------------------------------------------------------------------------- run.failed


def test_a_refused_run_records_run_failed(
    cli: Cli, add_accounts: AddAccounts, engine: Engine
) -> None:
    from cryptography.fernet import Fernet

    add_accounts(1)
    wrong = Fernet.generate_key().decode()
    result = cli("refresh", env={"TOKENREFRESH_ENCRYPTION_KEYS": wrong})
    assert result.exit_code == 3
    [failed] = events(engine)
    data = failed["body"]["data"]
    assert failed["body"]["type"] == "run.failed"
    assert (data["command"], data["exit_code"], data["outcome"]) == ("refresh", 3, "config_error")
    assert "TOKENREFRESH_ENCRYPTION_KEYS" in data["message"]
    assert_no_secret(failed["payload"], wrong)


def test_a_run_stopped_by_the_breaker_records_run_failed_but_account_failures_do_not(
    cli: Cli, add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    add_accounts(1)
    fail_transiently(standin, "user0")
    assert cli("refresh", "--window", "3h").exit_code == 1  # one account failed: not run.failed
    assert events(engine, "run.failed") == []
    add_accounts(12, prefix="more")
    standin.script(*[tiktok_error("server_error", 503)] * 60)
    result = cli("refresh", "--window", "3h", "--json")
    assert result.exit_code == 1
    assert result.json()["stopped"]["reason"] == "circuit_breaker"
    [failed] = events(engine, "run.failed")
    assert failed["body"]["data"]["outcome"] == "stopped"
    assert "TikTok is failing" in failed["body"]["data"]["message"]


# ----------------------------------------------------------------------------- list, prune


def two_expired_events(cli: Cli, add_accounts: AddAccounts, standin: TikTokStandIn) -> None:
    """Two accounts whose refresh tokens TikTok rejects, and a run: two account.expired."""
    add_accounts(2)
    standin.revoke("user0")
    standin.revoke("user1")
    assert cli("refresh", "--window", "3h").exit_code == 1


def test_events_list_shows_the_outbox(
    cli: Cli, add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    two_expired_events(cli, add_accounts, standin)
    listed = cli("events", "list", "--json")
    assert listed.exit_code == 0, listed.stderr
    shown = listed.json()["events"]
    assert [e["id"] for e in shown] == [2, 1]  # newest first
    assert {e["state"] for e in shown} == {"pending"}
    assert shown[0]["payload"] == events(engine)[1]["body"]
    assert set(shown[0]) == {
        "id",
        "event_id",
        "type",
        "account_id",
        "state",
        "created_at",
        "attempts",
        "next_attempt_at",
        "delivered_at",
        "last_error",
        "payload",
    }
    assert len(cli("events", "list", "--json", "--limit", "1").json()["events"]) == 1
    assert cli("events", "list", "--json", "--type", "run.failed").json() == {"events": []}
    assert cli("events", "list", "--type", "nonsense").exit_code == 2
    text = cli("events", "list")
    assert text.exit_code == 0
    assert "account.expired" in text.stdout


def test_cleanup_prunes_events_older_than_the_retention(
    cli: Cli, add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    two_expired_events(cli, add_accounts, standin)
    old = datetime.now(UTC) - timedelta(days=8)
    with engine.begin() as connection:
        connection.execute(update(OutboxEvent).where(OutboxEvent.id == 1).values(created_at=old))
    preview = cli("cleanup", "--dry-run", "--json")
    assert preview.json()["counts"]["events_pruned"] == 1
    assert len(events(engine)) == 2
    result = cli("cleanup", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["counts"]["events_pruned"] == 1
    assert [e["id"] for e in events(engine)] == [2]


@pytest.mark.parametrize("reason", ["rft.", "act."])
def test_no_secret_reaches_a_payload(
    cli: Cli, add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine, reason: str
) -> None:
    issued = add_accounts(1)
    token = issued[0].refresh_token if reason == "rft." else issued[0].access_token
    standin.script(
        tiktok_error("invalid_grant", 400, f"token {token} and secret {standin.client_secret}"),
        open_id="user0",
    )
    assert cli("refresh", "--window", "3h").exit_code == 1
    [expired] = events(engine)
    assert_no_secret(expired["payload"], token, standin.client_secret)
