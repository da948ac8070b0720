"""One refresh run against a hostile TikTok, end to end, on SQLite and PostgreSQL.

Every account in the run meets a different odd or hostile answer at once. What must hold:
every new pair TikTok issued is what is stored (the next refresh presents it and works),
the healthy accounts are refreshed in the same run, the run ends in bounded time, and no
fragment of a token or the client secret appears in any byte of output or in any text the
database keeps. A far-off Retry-After parks nobody (a test of its own: a long one ends the
run, by design).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from conftest import Cli
from helpers import AddAccounts, account, all_rows, counts, leaked, stored_tokens
from standin import Reply, TikTokStandIn, tiktok_error

TRICKLE_SECONDS = 100  # what the trickled answer would take, byte by byte
HTTP_TIMEOUT = "2"  # the whole call's deadline, in seconds


def with_fields(**fields: Any) -> Any:
    """A twist: the normal (rotating) answer with these fields changed; None removes one."""

    def twist(payload: dict[str, Any]) -> tuple[int, Any]:
        changed = {**payload, **fields}
        return 200, {name: value for name, value in changed.items() if value is not None}

    return twist


def as_status(status: int) -> Any:
    """A twist: the normal answer, new pair and all, but with this HTTP status."""
    return lambda payload: (status, payload)


@pytest.mark.slow
def test_a_run_against_a_hostile_tiktok_loses_nothing_and_leaks_nothing(
    cli: Cli, standin: TikTokStandIn, add_accounts: AddAccounts, engine: Engine, fernet_key: str
) -> None:
    issued = {tokens.open_id: tokens for tokens in add_accounts(11)}
    # Answers that carry a new pair, however odd: each must be stored.
    standin.twist("user0", with_fields(expires_in=7200.0))
    standin.twist("user1", with_fields(expires_in="7200", refresh_expires_in=" 15552000 "))
    standin.twist("user2", with_fields(expires_in=None))
    standin.twist("user3", with_fields(expires_in=10**20, refresh_expires_in=1e300))
    standin.twist("user4", as_status(500))
    # Answers with no pair: failures of the account alone, never a crash of the run.
    echo = issued["user5"].refresh_token
    standin.script(
        *[
            tiktok_error(
                "invalid_request",
                400,
                f"bad token {echo.upper()} / {echo[5:30]} / {standin.client_secret[2:20]}",
            )
        ],
        open_id="user5",
    )
    trickled = Reply(200, {"error": "server_error", "padding": "x" * 200}, trickle=0.5)
    standin.script(*[trickled] * 3, open_id="user6")
    standin.script(*[Reply(200, body="{", endless=True)] * 3, open_id="user7")
    garbage_wait = Reply(503, headers={"Retry-After": "-5, nan, 1e999"})
    standin.script(*[garbage_wait] * 3, open_id="user8")
    nested = Reply(200, body=b"[" * 100_000 + b"]" * 100_000)
    standin.script(*[nested] * 3, open_id="user10")
    before = datetime.now(UTC)
    started = time.monotonic()

    result = cli(
        "refresh", "--window", "3h", "--json", "--concurrency", "4", "--http-timeout", HTTP_TIMEOUT
    )

    took = time.monotonic() - started
    assert result.exit_code == 1, result.stderr
    report = result.json()
    assert report["counts"] == counts(refreshed=6, failed=5)
    assert report["stopped"] is None
    failed = {problem["open_id"] for problem in report["problems"]}
    assert failed == {"user5", "user6", "user7", "user8", "user10"}
    # Bounded: the trickle alone would take TRICKLE_SECONDS; three attempts end at the deadline.
    assert took < TRICKLE_SECONDS / 2
    assert "Traceback" not in result.stderr

    # Every pair TikTok issued is the one stored, with its lifetimes read as promised.
    refreshed = ["user0", "user1", "user2", "user3", "user4", "user9"]
    newest = {open_id: standin.current_refresh_token(open_id) for open_id in refreshed}
    for open_id in refreshed:
        assert newest[open_id] != issued[open_id].refresh_token, open_id
        assert stored_tokens(engine, open_id, fernet_key)[1] == newest[open_id], open_id
    rows = {open_id: account(engine, open_id) for open_id in issued}
    two_hours = timedelta(hours=2)
    assert rows["user0"]["access_expires_at"] - before >= two_hours - timedelta(minutes=1)
    assert rows["user1"]["access_expires_at"] - before >= two_hours - timedelta(minutes=1)
    assert rows["user2"]["access_expires_at"] <= datetime.now(UTC)  # unknown: due again
    assert rows["user3"]["access_expires_at"] - before <= timedelta(days=1, minutes=1)
    assert rows["user3"]["refresh_expires_at"] - before <= timedelta(days=366, minutes=1)
    for open_id in failed:
        assert rows[open_id]["status"] == "active", open_id
        assert rows[open_id]["consecutive_failures"] == 1, open_id

    # The next refresh presents exactly the stored tokens, and TikTok takes them.
    standin.reset_log()
    ids = [str(rows[open_id]["id"]) for open_id in refreshed]
    again = cli("refresh", "--json", *(arg for i in ids for arg in ("--account-id", i)))
    assert again.json()["counts"]["refreshed"] == len(refreshed), again.stdout
    assert standin.presented() == dict.fromkeys(newest.values(), 1)

    # No fragment of a secret anywhere: output, logs, and every text the database keeps.
    history = all_rows(engine)
    kept = [
        str(row[column])
        for name, columns in (
            ("accounts", ("last_error", "label", "scope")),
            ("attempts", ("message", "error_code", "log_id")),
            ("runs", ("message",)),
        )
        for row in history[name]
        for column in columns
        if row[column] is not None
    ]
    secrets = [*standin.issued_tokens, standin.client_secret]
    assert leaked([result.stdout, result.stderr, again.stdout, again.stderr, *kept], secrets) == []


def test_a_retry_after_in_the_year_9999_parks_the_account_an_hour_at_most(
    cli: Cli, standin: TikTokStandIn, add_accounts: AddAccounts, engine: Engine
) -> None:
    """A long Retry-After ends the run (the rest is left for the next one), and the account
    waits no longer than the back-off's cap, whatever date TikTok names."""
    add_accounts(1)
    far_off = Reply(503, headers={"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"})
    standin.script(far_off, open_id="user0")

    result = cli("refresh", "--window", "3h", "--json")

    assert result.json()["stopped"]["reason"] == "rate_limited"
    row = account(engine, "user0")
    assert row["status"] == "active"
    now = datetime.now(UTC)
    assert now + timedelta(minutes=59) <= row["next_attempt_at"] <= now + timedelta(hours=1)
