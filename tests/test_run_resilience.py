"""One account never stops a run; a grant that cannot be stored is loud; signals, manual runs
and imports that overlap a run lose nothing. Real processes, real signals, real SQLite and
PostgreSQL, the loopback stand-in; each test asserts what is stored and what TikTok saw.
"""

from __future__ import annotations

import json
import signal

import pytest
from sqlalchemy import Engine, text

from conftest import Cli
from helpers import AddAccounts, account, counts, finish, import_line, start, stored_tokens
from standin import TikTokStandIn

WINDOW = ("--window", "3h")  # the stand-in's tokens live 2 h: all due


# ----------------------------------------------------------------------------- one account


def test_an_account_whose_tokens_cannot_be_decrypted_fails_alone(
    cli: Cli, standin: TikTokStandIn, add_accounts: AddAccounts, engine: Engine
) -> None:
    add_accounts(3)
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE accounts SET refresh_token_ciphertext = 'gAAAAAbroken' WHERE id = 1")
        )

    result = cli("refresh", *WINDOW, "--json", "--concurrency", "1")

    assert result.exit_code == 1
    report = result.json()
    assert report["counts"] == counts(refreshed=2, failed=1)
    assert report["stopped"] is None
    [problem] = report["problems"]
    assert problem["account_id"] == 1
    assert problem["detail"].startswith("its stored tokens cannot be decrypted with any key")
    broken = account(engine, "user0")
    assert broken["status"] == "active"
    assert broken["consecutive_failures"] == 1
    assert broken["last_error"] == problem["detail"]
    assert standin.refresh_count() == 2  # the other two were refreshed
    assert "Traceback" not in result.stderr


def test_a_row_that_cannot_be_read_fails_alone_on_sqlite(
    cli: Cli, standin: TikTokStandIn, add_accounts: AddAccounts, engine: Engine
) -> None:
    """SQLite keeps any text in any column: a corrupted timestamp must not stop the run."""
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL types its columns: this corruption cannot happen there")
    add_accounts(3)
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE accounts SET refresh_expires_at = '2999-13-45 garbage' WHERE id = 2")
        )

    result = cli("refresh", *WINDOW, "--json", "--concurrency", "1")

    assert result.exit_code == 1, result.stderr
    report = result.json()
    assert (report["counts"]["refreshed"], report["counts"]["failed"]) == (2, 1)
    [problem] = report["problems"]
    assert problem["account_id"] == 2
    assert problem["detail"].startswith("could not be refreshed: ValueError: ")
    assert standin.refresh_count() == 2
    assert "Traceback" not in result.stderr


# ----------------------------------------------------------------------------- lost grants


FAIL_TWO_ACCOUNTS = {
    "sqlite": [
        "CREATE TRIGGER disk_full BEFORE UPDATE OF token_generation ON accounts "
        "WHEN NEW.open_id IN ('user1', 'user2') AND NEW.token_generation <> OLD.token_generation "
        "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.open_id IN ('user1', 'user2') AND NEW.token_generation <> OLD.token_generation "
        "THEN RAISE EXCEPTION 'could not extend file: No space left on device'; END IF; "
        "RETURN NEW; END $$",
        "CREATE TRIGGER disk_full BEFORE UPDATE ON accounts FOR EACH ROW "
        "EXECUTE FUNCTION disk_full()",
    ],
}


@pytest.mark.slow
def test_a_grant_that_cannot_be_stored_is_counted_named_and_shown_even_quiet(
    cli: Cli, standin: TikTokStandIn, add_accounts: AddAccounts, engine: Engine
) -> None:
    add_accounts(3)
    with engine.begin() as connection:
        for statement in FAIL_TWO_ACCOUNTS[engine.dialect.name]:
            connection.execute(text(statement))

    quiet = cli("refresh", *WINDOW, "-q", "--account-id", "2")

    assert quiet.exit_code == 1
    assert "  account 2 (user1): lost: TikTok issued a new token pair but the database did " in (
        quiet.stdout
    )
    assert "1 lost" in quiet.stdout

    as_json = cli("refresh", *WINDOW, "--json", "--account-id", "3")
    report = as_json.json()
    assert report["counts"]["lost"] == 1
    [problem] = report["problems"]
    assert (problem["account_id"], problem["result"]) == (3, "lost")
    assert problem["detail"].endswith("its user may have to reconnect")
    # A database that does not take what it is given stops the run: spending more refresh
    # tokens at TikTok would only lose more of them.
    assert report["stopped"]["reason"] == "database_error"
    assert report["exit_code"] == 1
    assert standin.refresh_count() == 2  # both rotations happened at TikTok: both were lost


# ----------------------------------------------------------------------------- signals


@pytest.mark.slow
def test_a_signal_during_the_last_call_still_exits_143(
    env: dict[str, str],
    standin: TikTokStandIn,
    add_accounts: AddAccounts,
    engine: Engine,
    fernet_key: str,
) -> None:
    [tokens] = add_accounts(1)
    standin.latency = 2.0  # the last (and only) call is in flight when the signal comes
    process = start(env, "refresh", *WINDOW, "--json")
    standin.wait_for_requests(1, timeout=60)
    process.send_signal(signal.SIGTERM)

    code, out, err = finish(process)

    assert code == 128 + signal.SIGTERM, err
    report = json.loads(out)
    assert report["stopped"]["reason"] == "signal"
    assert report["counts"]["refreshed"] == 1  # the call in flight finished, and was stored
    newest = standin.current_refresh_token(tokens.open_id)
    assert stored_tokens(engine, "user0", fernet_key)[1] == newest


# ----------------------------------------------------------------------------- overlapping


@pytest.mark.slow
def test_a_manual_run_for_named_accounts_overlaps_a_cron_run(
    env: dict[str, str],
    cli: Cli,
    standin: TikTokStandIn,
    add_accounts: AddAccounts,
    engine: Engine,
) -> None:
    """PostgreSQL: row locks keep the runs apart, so the manual run goes ahead at once.
    SQLite has no row locks: the manual run waits its turn (exit 75)."""
    add_accounts(2)
    standin.slow["user0"] = 8.0  # the cron run sits on user0
    cron = start(env, "refresh", *WINDOW, "--concurrency", "1", "--json")
    standin.wait_for_requests(1, timeout=60)

    manual = cli("refresh", "--account-id", "2", "--account-id", "1", "--json")
    still_running = cron.poll() is None
    code, _out, err = finish(cron)

    assert still_running, "the manual run must not wait for the cron run"
    if engine.dialect.name == "postgresql":
        assert manual.exit_code == 0, manual.stderr
        result = manual.json()["counts"]
        assert (result["refreshed"], result["skipped"]) == (1, 1)  # user0 is the cron run's
        assert manual.json()["problems"] == []  # a skip is not a problem
    else:
        assert manual.exit_code == 75
        assert "another run holds the lock" in manual.stderr
    assert code == 0, err
    # Each token was presented once: nobody spent a token twice.
    assert max(standin.presented().values()) == 1


@pytest.mark.slow
def test_an_import_during_a_refresh_of_the_same_account_wins(
    env: dict[str, str],
    cli: Cli,
    standin: TikTokStandIn,
    add_accounts: AddAccounts,
    engine: Engine,
    fernet_key: str,
) -> None:
    """The newest consent wins: on SQLite the refresh's write is a compare-and-set and
    yields; on PostgreSQL the import waits for the row and then replaces the pair."""
    add_accounts(1)
    standin.slow["user0"] = 2.0
    refresh = start(env, "refresh", *WINDOW, "--json")
    standin.wait_for_requests(1, timeout=60)
    # The refresh has read the account and is waiting for TikTok: a new consent arrives.
    consent = standin.issue("user0")
    imported = cli("accounts", "import", input=import_line(consent))
    code, out, err = finish(refresh)

    assert imported.exit_code == 0, imported.stderr
    assert code == 0, err
    assert stored_tokens(engine, "user0", fernet_key)[1] == consent.refresh_token
    if engine.dialect.name == "sqlite":
        assert json.loads(out)["counts"]["skipped"] == 1
        assert "re-imported meanwhile; the newer consent wins" in err
    # The next refresh presents the imported token, and works.
    standin.reset_log()
    assert cli("refresh", *WINDOW, "--json").json()["counts"]["refreshed"] == 1
    assert standin.presented() == {consent.refresh_token: 1}
