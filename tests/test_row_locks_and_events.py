"""What PostgreSQL's row locks and the outbox's shared transactions promise, each seen from
outside by a test that a bug planted by hand made fail (tests/README.md, "Deliberate bugs").

- A claim steps over a row another transaction holds locked (an import locks its rows
  first): `FOR UPDATE SKIP LOCKED`, not `FOR UPDATE`, nor no lock at all. A short
  `lock_timeout` turns a claim that waits into an error, so no clock is read.
- Everything PostgreSQL-only that hangs on the one dialect check (`Database.holds_row_locks`):
  the claim's row lock above, the import's row lock (it waits for a writer holding the row,
  then judges the pair that writer stored) and autocommit reads.
- An `account.expired` or `account.failing` event is recorded in the very transaction of
  the change: when the outbox refuses the event, the change is rolled back with it and the
  run says the database failed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url

from conftest import Cli, CliResult, process_env
from helpers import AddAccounts, account, import_line, import_lines, stored_tokens, table
from standin import TikTokStandIn, tiktok_error
from tokenrefresh.base.defaults import FAILING_AFTER
from tokenrefresh.storage.engine import create_database_engine
from tokenrefresh.storage.repository import Repository

LOCK_TIMEOUT_MS = 5000  # a claim that waits on a row lock fails after this, instead of hanging
BLOCKED_WITHIN = 60.0  # seconds to see the import wait on the held row (a loaded machine)


# ----------------------------------------------------------------------------- helpers


@pytest.fixture
def impatient(postgres_url: str) -> Iterator[Repository]:
    """A repository on the test's PostgreSQL database whose statements give up waiting for
    a lock after LOCK_TIMEOUT_MS: a claim that waits on a held row raises."""
    url = make_url(postgres_url).set(drivername="postgresql+psycopg")
    url = url.update_query_dict({"options": f"-c lock_timeout={LOCK_TIMEOUT_MS}"})
    engine = create_database_engine(url)
    yield Repository(engine)
    engine.dispose()


@pytest.fixture
def holder(pg_engine: Engine) -> Iterator[Connection]:
    """A second connection, for a transaction that holds rows locked."""
    with pg_engine.connect() as connection:
        yield connection


def lock_row(connection: Connection, account_id: int) -> None:
    """Open a transaction holding the account's row locked, as an import's does."""
    connection.execute(
        text("SELECT id FROM accounts WHERE id = :id FOR UPDATE"), {"id": account_id}
    )


def wait_until_blocked(engine: Engine) -> None:
    """Until a connection to this database waits for a lock (the import, behind the holder)."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + BLOCKED_WITHIN
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            if connection.execute(query).scalar_one():
                return
        time.sleep(0.05)
    pytest.fail("the import never waited on the held row")


# ----------------------------------------------------------------------------- row locks


@pytest.mark.postgres
def test_a_claim_steps_over_a_row_another_transaction_holds(
    pg_env: dict[str, str], standin: TikTokStandIn, impatient: Repository, holder: Connection
) -> None:
    """Planted: FOR UPDATE without SKIP LOCKED, and a dialect check that never matches
    (no row lock at all): both claims wait for the holder, and fail at lock_timeout."""
    import_lines(pg_env, import_line(standin.issue("user0")) + import_line(standin.issue("user1")))
    lock_row(holder, 1)
    with impatient.claim(1, None) as claim:  # raises DatabaseError if it waited
        assert claim is None
    with impatient.claim(2, None) as other:  # the lock is on the row, not the table
        assert other is not None
    holder.rollback()
    with impatient.claim(1, None) as claim:
        assert claim is not None  # free again once the holder is done


@pytest.mark.postgres
@pytest.mark.slow
def test_an_import_waits_for_a_writer_holding_the_row_and_judges_its_pair(
    pg_env: dict[str, str],
    standin: TikTokStandIn,
    pg_engine: Engine,
    holder: Connection,
    tmp_path: Path,
) -> None:
    """The import locks the rows it judges before it reads them. A refresh (played here by a
    second connection) stores a pair newer than the line's `issued_at` and commits while
    the import waits: the import must judge against that pair and refuse the line. Planted:
    the dialect check that never matches; the import then read the older pair without
    waiting, accepted the line and overwrote the newer pair."""
    now = datetime.now(UTC)
    first = standin.issue("user0")
    import_lines(pg_env, import_line(first, issued_at=(now - timedelta(hours=2)).isoformat()))
    lock_row(holder, 1)
    holder.execute(
        text(
            "UPDATE accounts SET last_refreshed_at = :now, tokens_issued_at = :now, "
            "token_generation = token_generation + 1, refresh_token_fingerprint = NULL "
            "WHERE id = 1"
        ),
        {"now": now},
    )
    second = standin.issue("user0")
    late = tmp_path / "late.jsonl"
    late.write_text(import_line(second, issued_at=(now - timedelta(hours=1)).isoformat()))
    importer = subprocess.Popen(
        [sys.executable, "-m", "tokenrefresh", "accounts", "import", str(late)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=process_env(pg_env),
    )
    try:
        wait_until_blocked(pg_engine)
    finally:
        holder.commit()
    out, err = importer.communicate(timeout=120)
    assert importer.returncode == 2, out + err
    assert "line 1: open_id 'user0': issued_at " in err
    assert "is older than the pair stored" in err
    row = account(pg_engine, "user0")
    assert row["token_generation"] == 2  # the writer's, not the import's
    key = pg_env["TOKENREFRESH_ENCRYPTION_KEYS"]
    assert stored_tokens(pg_engine, "user0", key)[1] == first.refresh_token


@pytest.mark.postgres
def test_postgresql_reads_and_single_writes_run_in_autocommit(pg_engine: Engine) -> None:
    """Two statements of one read are two transactions (no BEGIN, no ROLLBACK around each
    read). Planted: the dialect check that never matches; both ran in one transaction."""
    repository = Repository(pg_engine)
    xact = text("SELECT pg_current_xact_id()::text")

    def two_transactions(connection: Connection) -> bool:
        return bool(connection.execute(xact).scalar_one() != connection.execute(xact).scalar_one())

    assert repository.read(two_transactions)
    assert repository.single_write(two_transactions)
    assert not repository.transaction(two_transactions)  # the contrast: one transaction


# ----------------------------------------------------------------------------- events


OUTBOX_REFUSES = {
    "sqlite": [
        "CREATE TRIGGER outbox_refuses BEFORE INSERT ON outbox "
        "WHEN NEW.type IN ('account.expired', 'account.failing') "
        "BEGIN SELECT RAISE(ABORT, 'the outbox refuses this event'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION outbox_refuses() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'the outbox refuses this event'; END $$",
        "CREATE TRIGGER outbox_refuses BEFORE INSERT ON outbox FOR EACH ROW "
        "WHEN (NEW.type IN ('account.expired', 'account.failing')) "
        "EXECUTE FUNCTION outbox_refuses()",
    ],
}


def refuse_account_events(engine: Engine) -> None:
    """From now on, recording account.expired or account.failing fails (a full disk, a
    broken outbox table): the transaction that records it fails with it."""
    with engine.begin() as connection:
        for statement in OUTBOX_REFUSES[engine.dialect.name]:
            connection.execute(text(statement))


def assert_stopped_by_the_database(result: CliResult) -> None:
    """The run says the database failed, and counts nothing as done."""
    assert result.exit_code == 1
    assert result.stderr.startswith("warning: stopping the run: database error: ")
    assert "the outbox refuses this event" in result.stderr
    report = result.json()
    assert (report["outcome"], report["stopped"]["reason"]) == ("stopped", "database_error")
    assert set(report["counts"].values()) == {0}


def test_an_expiry_whose_event_cannot_be_recorded_is_not_written(
    cli: Cli, add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    """Planted: account.expired recorded in a second transaction after the change
    committed; the account then stood expired with no event for it."""
    add_accounts(1)
    before = account(engine, "user0")
    refuse_account_events(engine)
    standin.script(tiktok_error("invalid_grant", description="revoked"), open_id="user0")
    result = cli("refresh", "--account-id", "1", "--json")
    assert_stopped_by_the_database(result)
    after = account(engine, "user0")
    assert (after["status"], after["last_error"]) == ("active", None)
    assert after["token_generation"] == before["token_generation"]
    assert [event["type"] for event in table(engine, "outbox")] == ["run.failed"]
    assert table(engine, "refresh_attempts") == []  # the attempt rolled back with the change


def test_a_failing_streak_whose_event_cannot_be_recorded_is_not_counted(
    cli: Cli, add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    """Planted: account.failing recorded in a second transaction after the change
    committed; the fifth failure then stood counted and nobody was told."""
    add_accounts(1)
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE accounts SET consecutive_failures = :n"), {"n": FAILING_AFTER - 1}
        )
    before = account(engine, "user0")
    refuse_account_events(engine)
    standin.script(tiktok_error("invalid_request", 400, "nope"), open_id="user0")
    result = cli("refresh", "--account-id", "1", "--json")
    assert_stopped_by_the_database(result)
    after = account(engine, "user0")
    assert after["consecutive_failures"] == FAILING_AFTER - 1
    assert (after["next_attempt_at"], after["last_error"]) == (
        before["next_attempt_at"],
        before["last_error"],
    )
    assert [event["type"] for event in table(engine, "outbox")] == ["run.failed"]
    assert table(engine, "refresh_attempts") == []
