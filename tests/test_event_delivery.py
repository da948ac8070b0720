"""Events end to end: a real run records them, delivers them to a real receiver on loopback
that verifies every signature with the `standardwebhooks` package, and keeps what it could
not deliver for the next run, with the same webhook-id. Real processes for the crash."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, update

from conftest import Cli, process_env
from helpers import AddAccounts, assert_no_secret, table
from receiver import Receiver, Reply, closed_port, running_receiver
from standin import TikTokStandIn
from tokenrefresh.render.values import timestamp
from tokenrefresh.storage.models import OutboxEvent


def outbox(engine: Engine) -> list[dict[str, Any]]:
    return table(engine, "outbox")


@pytest.fixture
def secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@pytest.fixture
def receiver(secret: str) -> Iterator[Receiver]:
    with running_receiver(secret) as running:
        yield running


def hooked(receiver_url: str, secret: str) -> dict[str, str]:
    return {"TOKENREFRESH_WEBHOOK_URL": receiver_url, "TOKENREFRESH_WEBHOOK_SECRET": secret}


def make_due(engine: Engine) -> None:
    """Time passes: every pending event's back-off is over."""
    with engine.begin() as connection:
        connection.execute(
            update(OutboxEvent).values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
        )


def test_a_run_delivers_a_signed_webhook_for_an_expired_account(
    cli: Cli,
    add_accounts: AddAccounts,
    standin: TikTokStandIn,
    engine: Engine,
    receiver: Receiver,
    secret: str,
) -> None:
    issued = add_accounts(2)
    standin.revoke("user0")
    result = cli("refresh", "--window", "3h", env=hooked(receiver.url, secret))
    assert result.exit_code == 1  # the account expired; delivery does not change that
    [got] = receiver.wait_for(1)
    [event] = outbox(engine)
    assert got.verified
    assert got.id == event["event_id"]
    assert got.body.decode() == event["payload"]
    assert json.loads(got.body)["type"] == "account.expired"
    assert event["delivered_at"] is not None
    for text in (got.body.decode(), json.dumps(got.headers), result.stderr, result.stdout):
        assert_no_secret(text, secret, *(t.refresh_token for t in issued), standin.client_secret)
    # Nothing new: nothing sent again.
    assert cli("refresh", "--window", "3h", env=hooked(receiver.url, secret)).exit_code == 0
    assert len(receiver.wait_for(2, seconds=0.5)) == 1


@pytest.fixture
def pending(
    cli: Cli, add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine, secret: str
) -> dict[str, Any]:
    """One account TikTok rejects, refreshed while the webhook receiver is down: its
    account.expired event, pending."""
    add_accounts(1)
    standin.revoke("user0")
    with closed_port() as port:
        down = f"http://127.0.0.1:{port}/hooks"
        assert cli("refresh", "--window", "3h", env=hooked(down, secret)).exit_code == 1
    [pending] = outbox(engine)
    return pending


def test_a_receiver_down_for_one_run_gets_the_event_later_with_the_same_id(
    cli: Cli, engine: Engine, receiver: Receiver, secret: str, pending: dict[str, Any]
) -> None:
    assert (pending["delivered_at"], pending["attempts"]) == (None, 1)
    assert pending["next_attempt_at"] > datetime.now(UTC)  # backing off
    assert pending["last_error"]
    make_due(engine)
    receiver.script.append(Reply(status=503))  # up, but failing once more
    delivered = cli("events", "deliver", "--json", env=hooked(receiver.url, secret))
    assert delivered.json()["failed"] == 1
    make_due(engine)
    delivered = cli("events", "deliver", "--json", env=hooked(receiver.url, secret))
    assert delivered.exit_code == 0, delivered.stderr
    assert delivered.json() == {
        "configured": True,
        "delivered": 1,
        "failed": 0,
        "dropped": 0,
        "pending": 0,
        "next_attempt_at": None,
    }
    first, second = receiver.wait_for(2)
    assert first.id == second.id == pending["event_id"]
    assert second.verified
    [event] = outbox(engine)
    assert (event["attempts"], event["delivered_at"] is not None) == (3, True)


def test_events_deliver_from_cron_quiet_says_nothing_and_now_retries_at_once(
    cli: Cli, engine: Engine, receiver: Receiver, secret: str, pending: dict[str, Any]
) -> None:
    assert pending["next_attempt_at"] > datetime.now(UTC)  # backing off
    up = hooked(receiver.url, secret)

    waiting = cli("events", "deliver", env=up)
    assert (waiting.exit_code, waiting.stderr) == (0, "")
    first, second = waiting.stdout.splitlines()
    assert first == "Events: 0 delivered, 0 failed (kept for later), 0 dropped; 1 pending."
    assert second.startswith(f"Next attempt due at {timestamp(pending['next_attempt_at'])} (in ")
    assert second.endswith("); --now retries at once.")
    assert cli("events", "deliver", "--json", env=up).json()["next_attempt_at"] == timestamp(
        pending["next_attempt_at"]
    )
    quiet = cli("events", "deliver", "-q", env=up)
    assert (quiet.exit_code, quiet.stdout, quiet.stderr) == (0, "", "")
    assert receiver.wait_for(1, seconds=0.5) == []  # not due: nothing sent

    receiver.script.append(Reply(status=503))
    failing = cli("events", "deliver", "--quiet", "--now", env=up)
    assert failing.exit_code == 0
    assert failing.stdout.startswith(
        "Events: 0 delivered, 1 failed (kept for later), 0 dropped; 1 pending.\n"
    )  # something to say, even with -q
    delivered = cli("events", "deliver", "-q", "--now", env=up)
    assert (delivered.exit_code, delivered.stdout, delivered.stderr) == (0, "", "")
    first_try, second_try = receiver.wait_for(2)
    assert first_try.id == second_try.id == pending["event_id"]
    assert second_try.verified
    [event] = outbox(engine)
    assert (event["attempts"], event["delivered_at"] is not None) == (3, True)
    done = cli("events", "deliver", env=up)
    assert done.stdout == "Events: 0 delivered, 0 failed (kept for later), 0 dropped; 0 pending.\n"


def test_an_event_survives_a_crash_between_the_change_and_its_delivery(
    env: dict[str, str],
    add_accounts: AddAccounts,
    standin: TikTokStandIn,
    engine: Engine,
    receiver: Receiver,
    secret: str,
    cli: Cli,
) -> None:
    add_accounts(1)
    standin.revoke("user0")
    receiver.default = Reply(delay=30.0)  # the first delivery hangs: the run is killed in it
    process = subprocess.Popen(
        [sys.executable, "-m", "tokenrefresh", "refresh", "--window", "3h"],
        env=process_env({**env, **hooked(receiver.url, secret)}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        [first] = receiver.wait_for(1, seconds=60)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.communicate(timeout=60)
    [pending] = outbox(engine)
    assert pending["delivered_at"] is None  # committed with the change, not delivered
    receiver.default = Reply()
    result = cli("events", "deliver", env=hooked(receiver.url, secret))
    assert result.exit_code == 0, result.stderr
    again = receiver.wait_for(2)[1]
    assert again.id == first.id == pending["event_id"]  # the receiver can tell the duplicate
    assert outbox(engine)[0]["delivered_at"] is not None


def test_a_slow_receiver_does_not_hold_the_run(
    env: dict[str, str],
    add_accounts: AddAccounts,
    standin: TikTokStandIn,
    receiver: Receiver,
    secret: str,
) -> None:
    """Each event waits 5 s at most, delivery 10 s in all: far less than the receiver's
    minute, which is what this tells apart."""
    add_accounts(3)
    for open_id in ("user0", "user1", "user2"):
        standin.revoke(open_id)
    receiver.default = Reply(delay=60.0)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "tokenrefresh", "refresh", "--window", "3h", "--json"],
        env=process_env({**env, **hooked(receiver.url, secret)}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["counts"]["expired"] == 3
    assert elapsed < 45, elapsed


def test_people_get_one_digest_per_run(
    cli: Cli,
    add_accounts: AddAccounts,
    standin: TikTokStandIn,
    engine: Engine,
    receiver: Receiver,
) -> None:
    pytest.importorskip("apprise")
    add_accounts(3, label="Shop")
    for open_id in ("user0", "user2"):
        standin.revoke(open_id)
    notify = {"TOKENREFRESH_NOTIFY_URLS": f"json://127.0.0.1:{receiver.port}/digest"}
    assert cli("refresh", "--window", "3h", env=notify).exit_code == 1
    [digest] = receiver.wait_for(1)
    assert len(receiver.wait_for(2, seconds=0.5)) == 1  # one message, not one per account
    message = json.loads(digest.body)
    text = f"{message.get('title', '')}\n{message.get('message', '')}"
    assert "2 accounts need their users to reconnect" in text
    assert "user0" in text
    assert "user2" in text
    assert all(event["delivered_at"] is not None for event in outbox(engine))


def test_a_receiver_echoing_the_basic_credentials_has_them_shown_nowhere(
    cli: Cli,
    add_accounts: AddAccounts,
    standin: TikTokStandIn,
    engine: Engine,
    receiver: Receiver,
    secret: str,
) -> None:
    """Credentials in the webhook URL go out as HTTP Basic; a receiver that echoes the
    header gets only its status and standard phrase kept, and the base64 is scrubbed."""
    add_accounts(1)
    standin.revoke("user0")
    user, password = "hook-user", "hook-password-0123456789"
    url = receiver.url.replace("http://", f"http://{user}:{password}@")
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    receiver.default = Reply(400, echo=True)
    result = cli("refresh", "--window", "3h", env=hooked(url, secret))
    assert result.exit_code == 1
    [got] = receiver.wait_for(1)
    assert got.headers["authorization"] == f"Basic {basic}"  # what the receiver echoes
    [event] = outbox(engine)
    assert event["delivered_at"] is None
    assert event["last_error"] == "HTTP 400: Bad Request"
    shown = [result, event["last_error"]]
    for arguments in (("events", "list"), ("events", "list", "--json")):
        listed = cli(*arguments, env=hooked(url, secret))
        assert listed.exit_code == 0
        assert "HTTP 400: Bad Request" in listed.stdout
        shown.append(listed)
    assert "not delivered: HTTP 400: Bad Request" in result.stderr
    assert_no_secret(shown, basic, basic.rstrip("="), password, secret)
