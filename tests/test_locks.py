"""One run at a time: a PostgreSQL advisory lock, or a file lock beside the SQLite file."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, text

from conftest import Cli, process_env
from standin import TikTokStandIn
from tokenrefresh.adapters.context import Context
from tokenrefresh.adapters.locks import AdvisoryLock, advisory_key
from tokenrefresh.base.settings import Secret, Settings
from tokenrefresh.errors import LockHeld
from tokenrefresh.storage.records import Shard


def start_refresh(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tokenrefresh", "refresh", "--window", "3h", *args],
        env=process_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_advisory_key_is_a_stable_signed_64_bit_integer() -> None:
    key = advisory_key("tokenrefresh:refresh")
    assert key == advisory_key("tokenrefresh:refresh")
    assert key != advisory_key("tokenrefresh:refresh:shard=0/2")
    assert -(2**63) <= key < 2**63


@pytest.mark.slow
def test_a_second_run_exits_75_without_calling_tiktok(
    env: dict[str, str], standin: TikTokStandIn, add_accounts: Callable[..., list]
) -> None:
    issued = add_accounts(4)
    # The first run holds the lock for up to 4 x 2 s, enough for the second to start on a
    # loaded machine (parallel tests); once the second is done the rest is answered at once.
    standin.latency = 2.0
    first = start_refresh(env, "--concurrency", "1")
    try:
        standin.wait_for_requests(1, timeout=30)
        second = subprocess.run(
            [sys.executable, "-m", "tokenrefresh", "refresh", "--window", "3h"],
            env=process_env(env),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert first.poll() is None, "the first run should still be running"
        standin.latency = 0.0
    finally:
        _out, err = first.communicate(timeout=60)
    assert second.returncode == 75, second.stderr
    assert second.stdout == ""
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: another run holds the lock 'tokenrefresh:refresh'")
    assert first.returncode == 0, err
    # Every token was presented exactly once, all by the first run.
    assert len(standin.received) == 4
    assert all(standin.presented()[tokens.refresh_token] == 1 for tokens in issued)


@pytest.mark.slow
def test_a_killed_run_leaves_no_lock_behind(
    env: dict[str, str], standin: TikTokStandIn, add_accounts: Callable[..., list], cli: Cli
) -> None:
    add_accounts(3)
    standin.latency = 5.0
    first = start_refresh(env, "--concurrency", "1")
    standin.wait_for_requests(1, timeout=30)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    standin.latency = 0.0
    # The killed run's connection (PostgreSQL) or process (SQLite) is gone: so is its lock.
    deadline = time.monotonic() + 30
    while True:
        result = cli("refresh", "--window", "3h", "--json")
        if result.exit_code != 75 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert result.exit_code in (0, 1), result.stderr
    counts = result.json()["counts"]
    # The account whose answer the killed run never received was rotated at TikTok: at most
    # that one is lost; the other two are refreshed.
    assert counts["refreshed"] >= 2


# The advisory locks granted in this database, to any session.
ADVISORY_LOCKS_HELD = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


@pytest.mark.postgres
def test_advisory_lock_is_exclusive_and_released(pg_engine: Engine) -> None:
    engine = pg_engine
    first = AdvisoryLock(engine, "tokenrefresh:test")
    second = AdvisoryLock(engine, "tokenrefresh:test")
    with first:
        assert first.still_held()
        with pytest.raises(LockHeld, match="another run holds the lock 'tokenrefresh:test'"):
            second.acquire()
    # Released on the server, not only forgotten by the client.
    with engine.connect() as connection:
        assert connection.execute(text(ADVISORY_LOCKS_HELD)).scalar_one() == 0
    with second:
        assert second.still_held()


@pytest.mark.postgres
def test_a_dropped_lock_connection_is_noticed(
    pg_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    engine = pg_engine
    lock = AdvisoryLock(engine, "tokenrefresh:test")
    lock.acquire()
    with engine.connect() as connection:
        connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_locks "
                "WHERE locktype = 'advisory' AND granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        )
    assert not lock.still_held()
    lock.release()  # must not raise, and must not hand a broken connection back to the pool
    assert [record.getMessage() for record in caplog.records] == [
        "the connection that held the run lock 'tokenrefresh:test' was lost; "
        "PostgreSQL released the lock with it"
    ]
    again = AdvisoryLock(engine, "tokenrefresh:test")
    with again:
        assert again.still_held()


@pytest.mark.parametrize("other", ["1/2", "0/3", "2/3", "0/2"])
def test_sqlite_shards_share_one_lock(
    sqlite_url: str, cli: Cli, standin: TikTokStandIn, add_accounts: Callable[..., list], other: str
) -> None:
    """SQLite has no row locks: overlapping shards (0/2 and 0/3 share account 6) would
    present the same refresh token twice, so every shard waits for the one lock."""
    add_accounts(6)
    settings = Settings(database_url=Secret(sqlite_url))
    with Context(settings) as context, context.run_lock("refresh", Shard(0, 2)):
        result = cli(
            "refresh",
            "--window",
            "3h",
            "--shard",
            other,
            env={"TOKENREFRESH_DATABASE_URL": sqlite_url},
        )
    assert result.exit_code == 75, result.stderr
    assert result.stderr.startswith("error: another run holds the lock 'tokenrefresh:refresh'")
    assert standin.received == []
