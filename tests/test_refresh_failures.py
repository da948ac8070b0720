"""`tokenrefresh refresh` when TikTok or the network fails: each failure class of the spec.

Every test runs on SQLite and on PostgreSQL, through the CLI, against the loopback stand-in.
Assertions look at what is in the database, what the stand-in received, the exit code and
the exact messages; no output may ever carry a token.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, update

from conftest import Cli, CliResult
from helpers import (
    AddAccounts,
    account,
    all_rows,
    assert_no_secret,
    attempts,
    counts,
    rejected_attempt,
    runs,
    stored_tokens,
)
from standin import IssuedTokens, Reply, TikTokStandIn
from tokenrefresh.storage.models import Account, AccountStatus
from tokenrefresh.storage.records import WriteResult
from tokenrefresh.storage.repository import Repository

WINDOW = ("--window", "3h")  # imported tokens live 2 h: all due
FAST = ("--http-timeout", "0.3")
FIRST_BACKOFF = timedelta(minutes=5)  # FailureBackoff after one failed run
WRONG_SECRET = "wrong-client-secret-4711"


# ----------------------------------------------------------------------------- helpers


def assert_no_tokens(standin: TikTokStandIn, *outputs: CliResult | str | None) -> None:
    """No token TikTok issued, nor either client secret, in any of the outputs."""
    assert_no_secret(list(outputs), *standin.issued_tokens, standin.client_secret, WRONG_SECRET)


def assert_history_has_no_tokens(engine: Engine, standin: TikTokStandIn) -> None:
    rows = all_rows(engine)
    texts = [row["last_error"] for row in rows["accounts"]]
    texts += [row["message"] for row in rows["attempts"]]
    texts += [row["message"] for row in rows["runs"]]
    assert_no_tokens(standin, *texts)


def assert_no_tokens_shown(
    engine: Engine, standin: TikTokStandIn, *outputs: CliResult | str | None
) -> None:
    """No token nor client secret in the outputs, nor in what the database keeps of the run."""
    assert_no_tokens(standin, *outputs)
    assert_history_has_no_tokens(engine, standin)


def refresh(cli: Cli, *args: str, env: dict[str, str] | None = None) -> CliResult:
    return cli("refresh", *args, env=env)


def refresh_user0(
    cli: Cli, add_accounts: AddAccounts, standin: TikTokStandIn, *replies: Reply, json: bool = True
) -> tuple[IssuedTokens, CliResult]:
    """One account, user0, whose next calls TikTok answers with the replies; its tokens, and
    a fast run over it (with --json unless json is False)."""
    [tokens] = add_accounts(1)
    standin.script(*replies, open_id="user0")
    return tokens, refresh(cli, *WINDOW, *FAST, *(["--json"] if json else []))


# ----------------------------------------------------------------------------- (a) invalid_grant


def test_invalid_grant_expires_the_account_and_the_run_goes_on(
    cli: Cli, standin: TikTokStandIn, add_accounts: AddAccounts, engine: Engine, fernet_key: str
) -> None:
    issued = add_accounts(3)
    standin.revoke("user0")  # first in line: its failure must not stop the others
    before = datetime.now(UTC)

    result = refresh(cli, *WINDOW, "--concurrency", "1")

    assert result.exit_code == 1, result.stderr
    rejected = account(engine, "user0")
    assert rejected["status"] == AccountStatus.EXPIRED
    assert rejected["last_error"] == (
        "TikTok rejected the refresh token: invalid_grant (HTTP 400): "
        "Refresh token is invalid or expired."
    )
    assert rejected["token_generation"] == 1
    assert rejected["last_refreshed_at"] is None
    [attempt] = attempts(engine, rejected["id"])
    assert attempt["outcome"] == "expired"
    assert attempt["http_status"] == 400
    assert attempt["error_code"] == "invalid_grant"
    assert attempt["log_id"] is not None
    assert len(attempt["log_id"]) == 32
    assert attempt["attempted_at"] >= before
    [run] = runs(engine)
    assert attempt["run_id"] == run["id"]

    # The other accounts were refreshed in the same run, their rotated tokens stored.
    for tokens in issued[1:]:
        row = account(engine, tokens.open_id)
        assert row["status"] == AccountStatus.ACTIVE
        assert row["last_error"] is None
        assert row["token_generation"] == 2
        assert row["last_refreshed_at"] >= before
        assert standin.presented()[tokens.refresh_token] == 1
        assert stored_tokens(engine, tokens.open_id, fernet_key)[1] == (
            standin.current_refresh_token(tokens.open_id)
        )
        [ok] = attempts(engine, row["id"])
        assert (ok["outcome"], ok["http_status"], ok["error_code"]) == ("refreshed", 200, None)

    lines = result.stdout.splitlines()
    assert lines[0].startswith("Refreshed 2 of 3 account(s): 1 expired, 0 failed, 0 skipped (run ")
    assert lines[1] == (
        f"  account {rejected['id']} (user0): expired: TikTok rejected the refresh token: "
        "invalid_grant (HTTP 400): Refresh token is invalid or expired."
    )
    assert lines[2] == (
        "Expired accounts: TikTok rejected their refresh token (their user revoked access, "
        "or the token ran out: TikTok does not say which); their user must reconnect "
        "(`tokenrefresh accounts connect`, or `accounts import` of new tokens)."
    )
    assert len(lines) == 3
    assert_no_tokens_shown(engine, standin, result)


def test_invalid_grant_with_http_200_still_expires(
    cli: Cli, standin: TikTokStandIn, add_accounts: AddAccounts, engine: Engine
) -> None:
    add_accounts(1)
    standin.invalid_grant_status = 200
    standin.revoke("user0")

    result = refresh(cli, *WINDOW, "--json")

    assert result.exit_code == 1
    report = result.json()
    assert report["counts"] == counts(expired=1)
    row = account(engine, "user0")
    assert row["status"] == AccountStatus.EXPIRED
    assert row["last_error"] == (
        "TikTok rejected the refresh token: invalid_grant (HTTP 200): "
        "Refresh token is invalid or expired."
    )
    [attempt] = attempts(engine, row["id"])
    assert (attempt["outcome"], attempt["http_status"], attempt["error_code"]) == (
        "expired",
        200,
        "invalid_grant",
    )
    assert len(standin.received) == 1
    assert_no_tokens(standin, result)


# ----------------------------------------------------------------------------- (b) lost race


def store_newer_pair_meanwhile(engine: Engine, account_id: int) -> None:
    """Another process stores a newer token pair (bumps the generation) while the claim is
    out: a claim is a lease, not a row lock, so nothing makes the other writer wait."""
    with engine.begin() as connection:
        connection.execute(
            update(Account)
            .where(Account.id == account_id)
            .values(token_generation=Account.token_generation + 1)
        )


def test_rejection_after_someone_stored_a_newer_pair_is_a_lost_race(
    add_accounts: AddAccounts, repository: Repository, engine: Engine
) -> None:
    add_accounts(1)
    account_id = account(engine, "user0")["id"]

    with repository.claim(account_id, None) as claim:
        assert claim is not None
        assert claim.account.token_generation == 1
        store_newer_pair_meanwhile(engine, account_id)
        written = claim.mark_expired(
            "TikTok rejected the refresh token", [rejected_attempt(log_id="LOG-RACE")]
        )

    # The generation check catches it: the newer pair is not marked expired.
    row = account(engine, "user0")
    assert written == WriteResult.LOST_RACE
    assert row["status"] == AccountStatus.ACTIVE
    assert row["last_error"] is None
    assert row["token_generation"] == 2
    assert row["lease_owner"] is None
    # The call belongs in the history either way.
    [kept] = attempts(engine, account_id)
    assert (kept["outcome"], kept["error_code"], kept["log_id"]) == (
        "expired",
        "invalid_grant",
        "LOG-RACE",
    )


def test_failure_after_someone_stored_a_newer_pair_is_a_lost_race(
    add_accounts: AddAccounts, repository: Repository, engine: Engine
) -> None:
    add_accounts(1)
    account_id = account(engine, "user0")["id"]
    next_attempt_at = datetime.now(UTC) + FIRST_BACKOFF

    with repository.claim(account_id, None) as claim:
        assert claim is not None
        store_newer_pair_meanwhile(engine, account_id)
        written = claim.record_failure("refresh failed: HTTP 503", next_attempt_at, [])

    row = account(engine, "user0")
    assert written == WriteResult.LOST_RACE
    assert row["consecutive_failures"] == 0
    assert row["last_error"] is None
    assert row["next_attempt_at"] < next_attempt_at
    assert row["status"] == AccountStatus.ACTIVE


# ----------------------------------------------------------------------------- (c) invalid_client


def test_invalid_client_stops_the_run_and_marks_nothing(
    cli: Cli, standin: TikTokStandIn, add_accounts: AddAccounts, engine: Engine
) -> None:
    issued = add_accounts(3)
    accounts_before = all_rows(engine)["accounts"]

    result = refresh(cli, *WINDOW, "--concurrency", "1", env={"TIKTOK_CLIENT_SECRET": WRONG_SECRET})

    assert result.exit_code == 3
    assert result.stdout == ""
    error_line = (
        "error: TikTok rejected the app's credentials (TIKTOK_CLIENT_KEY / TIKTOK_CLIENT_SECRET),"
        " so the run stopped and no account was marked. TikTok said: invalid_client (HTTP 401):"
        " Client key or secret is invalid."
    )
    assert result.stderr.splitlines()[-1] == error_line
    # One request, with the wrong secret; no account's token was presented again.
    [received] = standin.received
    assert received.form["client_secret"] == WRONG_SECRET
    assert sum(standin.presented()[tokens.refresh_token] for tokens in issued) == 1
    for tokens in issued:
        assert standin.is_valid(tokens.refresh_token)
    # No account changed at all: no status, no last_error, no back-off, no history.
    after = all_rows(engine)
    assert after["accounts"] == accounts_before
    assert after["attempts"] == []
    [run] = after["runs"]
    assert run["outcome"] == "config_error"
    assert run["exit_code"] == 3
    assert run["finished_at"] is not None
    assert run["message"] == error_line.removeprefix("error: ")
    assert_no_tokens_shown(engine, standin, result)


# ----------------------------------------------------------------------------- (d) transient


def test_503_then_success_refreshes_with_two_attempts(
    cli: Cli, standin: TikTokStandIn, add_accounts: AddAccounts, engine: Engine
) -> None:
    tokens, result = refresh_user0(
        cli, add_accounts, standin, Reply(503, "<html>Service Unavailable</html>")
    )

    assert result.exit_code == 0, result.stderr
    assert result.json()["counts"] == counts(refreshed=1)
    row = account(engine, "user0")
    assert row["status"] == AccountStatus.ACTIVE
    assert row["last_error"] is None
    assert row["consecutive_failures"] == 0
    assert row["token_generation"] == 2
    history = attempts(engine, row["id"])
    assert [(a["outcome"], a["http_status"]) for a in history] == [
        ("failed", 503),
        ("refreshed", 200),
    ]
    assert history[0]["message"] == "HTTP 503 from TikTok"
    assert standin.presented()[tokens.refresh_token] == 2
    assert standin.refresh_count("user0") == 1
    assert_no_tokens(standin, result)


def test_503_three_times_fails_backs_off_and_is_skipped_until_forced(
    cli: Cli, standin: TikTokStandIn, add_accounts: AddAccounts, engine: Engine
) -> None:
    [tokens] = add_accounts(1)
    standin.script(*[Reply(503)] * 3, open_id="user0")
    before = datetime.now(UTC)

    result = refresh(cli, *WINDOW, *FAST)

    after = datetime.now(UTC)
    assert result.exit_code == 1
    row = account(engine, "user0")
    assert row["status"] == AccountStatus.ACTIVE
    assert row["consecutive_failures"] == 1
    assert row["token_generation"] == 1
    assert row["last_error"] == "refresh failed: HTTP 503 from TikTok"
    assert before + FIRST_BACKOFF <= row["next_attempt_at"] <= after + FIRST_BACKOFF
    history = attempts(engine, row["id"])
    assert [(a["outcome"], a["http_status"]) for a in history] == [("failed", 503)] * 3
    assert standin.presented()[tokens.refresh_token] == 3
    assert result.stdout.splitlines()[1] == (
        f"  account {row['id']} (user0): failed: refresh failed: HTTP 503 from TikTok"
    )
    assert result.stdout.splitlines()[0].startswith(
        "Refreshed 0 of 1 account(s): 0 expired, 1 failed, 0 skipped"
    )

    # The next run leaves it alone: its next attempt time has not come.
    again = refresh(cli, *WINDOW, *FAST)
    assert again.exit_code == 0
    assert again.stdout == "Nothing to refresh: no account is due.\n"
    assert len(standin.received) == 3
    planned = refresh(cli, *WINDOW, "--dry-run", "--json")
    assert planned.json()["count"] == 0

    # --account-id forces it.
    forced = refresh(cli, "--account-id", str(row["id"]), *FAST, "--json")
    assert forced.exit_code == 0, forced.stderr
    assert forced.json()["counts"]["refreshed"] == 1
    row = account(engine, "user0")
    assert row["consecutive_failures"] == 0
    assert row["last_error"] is None
    assert row["token_generation"] == 2
    assert standin.refresh_count("user0") == 1
    assert_no_tokens_shown(engine, standin, result, again, forced)


# "3": the default pause after a 429 is 1 s and the first retry's backoff at most 0.5 s,
# so only an honoured Retry-After explains a gap of 3 s or more.
@pytest.mark.parametrize("retry_after", ["0", "3"])
def test_429_retry_after_is_honoured_then_success(
    cli: Cli, standin: TikTokStandIn, add_accounts: AddAccounts, engine: Engine, retry_after: str
) -> None:
    _, result = refresh_user0(
        cli, add_accounts, standin, Reply(429, headers={"Retry-After": retry_after})
    )

    assert result.exit_code == 0, result.stderr
    assert result.json()["counts"]["refreshed"] == 1
    first, second = standin.received
    assert second.at - first.at >= float(retry_after)
    row = account(engine, "user0")
    assert row["status"] == AccountStatus.ACTIVE
    assert row["token_generation"] == 2
    history = attempts(engine, row["id"])
    assert [(a["outcome"], a["http_status"]) for a in history] == [
        ("failed", 429),
        ("refreshed", 200),
    ]


def test_long_retry_after_stops_the_run_and_leaves_the_rest(
    cli: Cli, standin: TikTokStandIn, add_accounts: AddAccounts, engine: Engine
) -> None:
    issued = add_accounts(3)
    standin.script(Reply(429, headers={"Retry-After": "3600"}), open_id="user0")
    before = datetime.now(UTC)

    result = refresh(cli, *WINDOW, *FAST, "--concurrency", "1", "--json")

    assert result.exit_code == 1
    report = result.json()
    assert report["outcome"] == "stopped"
    assert report["stopped"]["reason"] == "rate_limited"
    assert report["stopped"]["left_due"] == 2
    assert report["counts"] == counts(failed=1)
    assert len(standin.received) == 1
    row = account(engine, "user0")
    assert row["status"] == AccountStatus.ACTIVE
    assert row["next_attempt_at"] >= before + timedelta(seconds=3600)
    for tokens in issued[1:]:
        assert standin.presented()[tokens.refresh_token] == 0
        assert account(engine, tokens.open_id)["token_generation"] == 1


def test_html_garbage_with_200_is_transient(
    cli: Cli, standin: TikTokStandIn, add_accounts: AddAccounts, engine: Engine
) -> None:
    [tokens] = add_accounts(1)
    standin.default = Reply(200, "<html><body>Please enable JavaScript</body></html>")

    result = refresh(cli, *WINDOW, *FAST)

    assert result.exit_code == 1
    row = account(engine, "user0")
    assert row["status"] == AccountStatus.ACTIVE
    assert row["consecutive_failures"] == 1
    assert row["last_error"] == "refresh failed: TikTok's answer is not a JSON object"
    history = attempts(engine, row["id"])
    assert [(a["outcome"], a["http_status"]) for a in history] == [("failed", 200)] * 3

    standin.default = None
    forced = refresh(cli, "--account-id", str(row["id"]), *FAST)
    assert forced.exit_code == 0, forced.stdout
    assert standin.refresh_count("user0") == 1
    assert standin.presented()[tokens.refresh_token] == 4
    assert_no_tokens_shown(engine, standin, result, forced)


# ----------------------------------------------------------------------------- (e), (f) timeouts


def test_lost_answer_then_invalid_grant_expires_and_says_the_answer_was_lost(
    cli: Cli, standin: TikTokStandIn, add_accounts: AddAccounts, engine: Engine
) -> None:
    tokens, result = refresh_user0(cli, add_accounts, standin, Reply(delay=1.0, consume=True))

    assert result.exit_code == 1
    assert standin.lost_rotation_count("user0") == 1
    assert standin.presented()[tokens.refresh_token] == 2
    row = account(engine, "user0")
    assert row["status"] == AccountStatus.EXPIRED
    assert row["last_error"] == (
        "TikTok rejected the refresh token: invalid_grant (HTTP 400): Refresh token is invalid "
        "or expired.; an earlier attempt in this run got no answer, so TikTok probably rotated "
        "the token then and the response carrying the new one was lost"
    )
    history = attempts(engine, row["id"])
    assert [(a["outcome"], a["http_status"], a["error_code"]) for a in history] == [
        ("failed", None, None),
        ("expired", 400, "invalid_grant"),
    ]
    [problem] = result.json()["problems"]
    assert problem["result"] == "expired"
    assert "the response carrying the new one was lost" in problem["detail"]
    assert_no_tokens_shown(engine, standin, result)


def test_read_timeout_then_success_on_retry(
    cli: Cli, standin: TikTokStandIn, add_accounts: AddAccounts, engine: Engine
) -> None:
    tokens, result = refresh_user0(cli, add_accounts, standin, Reply(delay=1.0, consume=False))

    assert result.exit_code == 0, result.stderr
    assert result.json()["counts"]["refreshed"] == 1
    row = account(engine, "user0")
    assert row["status"] == AccountStatus.ACTIVE
    assert row["last_error"] is None
    assert row["token_generation"] == 2
    assert standin.presented()[tokens.refresh_token] == 2
    history = attempts(engine, row["id"])
    assert [(a["outcome"], a["http_status"]) for a in history] == [
        ("failed", None),
        ("refreshed", 200),
    ]
    assert history[0]["message"] == (
        "no complete answer from TikTok within 0.3 s (the token may have been rotated)"
    )


def test_read_timeout_every_time_fails_and_warns_about_rotation(
    cli: Cli, standin: TikTokStandIn, add_accounts: AddAccounts, engine: Engine
) -> None:
    _, result = refresh_user0(cli, add_accounts, standin, *[Reply(delay=1.0)] * 3, json=False)

    assert result.exit_code == 1
    row = account(engine, "user0")
    assert row["status"] == AccountStatus.ACTIVE
    assert row["consecutive_failures"] == 1
    assert row["last_error"] == (
        "refresh failed: no complete answer from TikTok within 0.3 s (the token may have been "
        "rotated): if the next attempt is rejected, the user must reconnect"
    )


# ----------------------------------------------------------------------------- (g) omitted token


def test_omitted_refresh_token_keeps_the_old_one(
    cli: Cli, standin: TikTokStandIn, add_accounts: AddAccounts, engine: Engine, fernet_key: str
) -> None:
    [tokens] = add_accounts(1)
    standin.omit_refresh_token = True

    first = refresh(cli, *WINDOW, "--json")

    assert first.exit_code == 0, first.stderr
    assert first.json()["counts"]["refreshed"] == 1
    row = account(engine, "user0")
    assert row["token_generation"] == 2
    assert stored_tokens(engine, "user0", fernet_key)[1] == tokens.refresh_token

    second = refresh(cli, "--account-id", str(row["id"]), "--json")

    assert second.exit_code == 0, second.stderr
    assert standin.presented()[tokens.refresh_token] == 2
    assert stored_tokens(engine, "user0", fernet_key)[1] == tokens.refresh_token
    assert account(engine, "user0")["token_generation"] == 3
    token = cli("accounts", "token", "--open-id", "user0")
    assert token.stdout.strip() in standin.issued_tokens
    assert token.stdout.strip() != tokens.access_token


# ----------------------------------------------------------------------------- (h) wrong open_id


def test_grant_for_another_open_id_stores_tokens_and_disables(
    cli: Cli, standin: TikTokStandIn, add_accounts: AddAccounts, engine: Engine, fernet_key: str
) -> None:
    [tokens] = add_accounts(1)
    standin.wrong_open_id = "someone-else"

    result = refresh(cli, *WINDOW)

    assert result.exit_code == 1
    row = account(engine, "user0")
    assert row["status"] == AccountStatus.DISABLED
    assert row["last_error"] == (
        "TikTok says this refresh token belongs to open_id 'someone-else': the new tokens are "
        "stored, but the account is disabled until someone checks it"
    )
    # The rotated pair was stored: the old refresh token is dead, the new one is kept.
    assert not standin.is_valid(tokens.refresh_token)
    assert stored_tokens(engine, "user0", fernet_key)[1] == (standin.current_refresh_token("user0"))
    assert row["token_generation"] == 2
    assert f"  account {row['id']} (user0): failed: TikTok says" in result.stdout
    assert_no_tokens_shown(engine, standin, result)


# ----------------------------------------------------------------------------- over many runs


TRANSIENT_KINDS = {
    "503": Reply(503, body="<html>Service Unavailable</html>"),
    "timeout": Reply(delay=1.0),  # no answer within --http-timeout 0.3
    "429": Reply(429, body={"error": {"code": "rate_limit_exceeded", "message": "slow down"}}),
    "garbage": Reply(200, body="<html>not json</html>"),
    "server_error": Reply(500, body={"error": "server_error", "error_description": "oops"}),
    "dropped": Reply(drop=True),
}
BACKOFF_MINUTES = [5, 10, 20, 40, 60, 60]  # FailureBackoff after 1, 2, ... failed runs


@pytest.mark.slow
def test_an_account_that_keeps_failing_transiently_stays_active_and_backs_off(
    cli: Cli, standin: TikTokStandIn, add_accounts: AddAccounts, engine: Engine, fernet_key: str
) -> None:
    """A transient error never expires an account, however many runs in a row meet one."""
    [tokens] = add_accounts(1)
    for run, (kind, reply) in enumerate(TRANSIENT_KINDS.items(), start=1):
        standin.script(reply, reply, reply, open_id="user0")  # every attempt of the run
        result = refresh(cli, *WINDOW, *FAST, "--json")
        assert result.exit_code == 1, (kind, result.stderr)
        assert result.json()["counts"]["failed"] == 1, kind
        row = account(engine, "user0")
        assert row["status"] == AccountStatus.ACTIVE, kind
        assert row["consecutive_failures"] == run, kind
        assert row["last_error"].startswith("refresh failed: "), kind
        last_attempt = attempts(engine, row["id"])[-1]["attempted_at"]
        pushed_back = row["next_attempt_at"] - last_attempt
        expected = timedelta(minutes=BACKOFF_MINUTES[run - 1])
        assert expected <= pushed_back <= expected + timedelta(seconds=30), kind
        # Three attempts: on a loaded machine the client can give up (0.3 s) before the
        # stand-in's thread has read a request it already holds, so wait for the reads.
        assert len(attempts(engine, row["id"])) == 3 * run, kind
        standin.wait_for_requests(3 * run)
        assert standin.pending_scripts("user0") == 0, kind
        # The next cron tick, once the back-off has passed.
        with engine.begin() as connection:
            connection.execute(
                update(Account)
                .where(Account.id == row["id"])
                .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
            )
    # The token was never rotated, so the same one is presented, and now it works.
    ok = refresh(cli, *WINDOW, "--json")
    assert ok.json()["counts"]["refreshed"] == 1
    row = account(engine, "user0")
    assert (row["consecutive_failures"], row["last_error"], row["status"]) == (0, None, "active")
    assert stored_tokens(engine, "user0", fernet_key)[1] == standin.current_refresh_token(
        tokens.open_id
    )


def test_a_plain_run_names_each_problem_once(
    cli: Cli, add_accounts: AddAccounts, standin: TikTokStandIn
) -> None:
    """The summary lists every problem; a log line for each as well only with -v."""
    add_accounts(2)
    standin.revoke("user0")
    result = cli("refresh", "--window", "3h")
    assert result.exit_code == 1
    assert (result.stdout + result.stderr).count("(user0): expired") == 1
    verbose = cli("refresh", "--account-id", "1", "-v")
    assert "(user0): expired" in verbose.stderr
