"""Refresh at scale and under faults, on a real PostgreSQL with real processes and signals.

Every test here checks the invariants that matter: each refresh token TikTok issued is
presented at most once, every token TikTok issued is stored (or was in flight when a
process was killed), and no account is expired because of our own failures.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.engine import make_url

from helpers import finish, import_lines, start
from standin import IssuedTokens, Reply, TikTokStandIn
from tokenrefresh.adapters.crypto import TokenCipher
from tokenrefresh.base.settings import Secret
from tokenrefresh.storage.models import Account

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


# ----------------------------------------------------------------------------- helpers


def refresh(env: dict[str, str], *args: str) -> tuple[int, dict, str]:
    code, out, err = finish(start(env, "refresh", "--json", *args))
    return code, json.loads(out) if out else {}, err


@pytest.fixture
def db(pg_env: dict[str, str]) -> Iterator[Engine]:
    url = make_url(pg_env["TOKENREFRESH_DATABASE_URL"]).set(drivername="postgresql+psycopg")
    engine = create_engine(url)
    yield engine
    engine.dispose()


def import_accounts(env: dict[str, str], standin: TikTokStandIn, count: int) -> list[IssuedTokens]:
    """Accounts whose access tokens expire in 10 minutes: due for the default 90m window,
    and no longer due once refreshed (the stand-in issues 2-hour tokens)."""
    issued = [standin.issue(f"user{index:04d}") for index in range(count)]
    import_lines(env, "\n".join(json.dumps(t.as_import_line(expires_in=600)) for t in issued))
    return issued


def stored(env: dict[str, str], db: Engine) -> dict[str, tuple[str, str | None]]:
    """open_id -> (status, decrypted refresh token)."""
    cipher = TokenCipher([Secret(env["TOKENREFRESH_ENCRYPTION_KEYS"])])
    with db.connect() as connection:
        rows = connection.execute(
            select(Account.open_id, Account.status, Account.refresh_token_ciphertext)
        ).all()
    return {
        open_id: (status, cipher.decrypt(ciphertext) if ciphertext else None)
        for open_id, status, ciphertext in rows
    }


def assert_presented_at_most_once(standin: TikTokStandIn) -> None:
    twice = {token[:8] for token, count in standin.presented().items() if count > 1}
    assert not twice, f"{len(twice)} refresh tokens were presented more than once"


def assert_all_current(env: dict[str, str], db: Engine, standin: TikTokStandIn) -> None:
    """Every account holds TikTok's newest refresh token, and is active."""
    for open_id, (status, token) in stored(env, db).items():
        assert status == "active", open_id
        assert token == standin.current_refresh_token(open_id), open_id


# ----------------------------------------------------------------------------- concurrency


def test_five_runs_started_together_present_every_token_once(
    pg_env: dict[str, str], standin: TikTokStandIn, db: Engine
) -> None:
    import_accounts(pg_env, standin, 300)
    standin.latency = 0.01
    # Five overlapping runs: different lock names, the same accounts. Only the row locks
    # (FOR UPDATE SKIP LOCKED) and the re-check after locking keep them apart.
    variants = [(), ("--shard", "0/1"), ("--shard", "0/2"), ("--shard", "1/2"), ("--shard", "0/3")]
    processes = [start(pg_env, "refresh", "--json", *args) for args in variants]
    results = [finish(process) for process in processes]
    for code, _, err in results:
        assert code == 0, err
    refreshed = sum(json.loads(out)["counts"]["refreshed"] for _, out, _ in results)
    assert refreshed == 300
    assert standin.refresh_count() == 300
    assert_presented_at_most_once(standin)
    assert_all_current(pg_env, db, standin)


def test_five_runs_of_one_lock_run_once(
    pg_env: dict[str, str], standin: TikTokStandIn, db: Engine
) -> None:
    import_accounts(pg_env, standin, 200)
    standin.latency = 0.01
    results = [finish(process) for process in [start(pg_env, "refresh") for _ in range(5)]]
    codes = sorted(code for code, _, _ in results)
    # One run holds the lock; the others exit 75 at once, or find nothing due if they
    # start after it finished.
    assert codes.count(0) >= 1
    assert set(codes) <= {0, 75}
    assert standin.refresh_count() == 200
    assert_presented_at_most_once(standin)
    assert_all_current(pg_env, db, standin)


def test_five_shards_split_the_work(
    pg_env: dict[str, str], standin: TikTokStandIn, db: Engine
) -> None:
    import_accounts(pg_env, standin, 250)
    standin.latency = 0.01
    processes = [start(pg_env, "refresh", "--json", "--shard", f"{index}/5") for index in range(5)]
    results = [finish(process) for process in processes]
    counts = [json.loads(out)["counts"] for _, out, _ in results]
    assert [code for code, _, _ in results] == [0] * 5
    # id mod 5 splits 250 consecutive ids evenly; no shard touches another's accounts.
    assert [count["refreshed"] for count in counts] == [50] * 5
    assert all(count["skipped"] == 0 for count in counts)
    assert_presented_at_most_once(standin)
    assert_all_current(pg_env, db, standin)


def test_concurrency_one_works(pg_env: dict[str, str], standin: TikTokStandIn, db: Engine) -> None:
    import_accounts(pg_env, standin, 5)
    code, report, err = refresh(pg_env, "--concurrency", "1")
    assert code == 0, err
    assert report["counts"]["refreshed"] == 5
    assert_all_current(pg_env, db, standin)


# ----------------------------------------------------------------------------- stopping


def test_sigterm_stores_in_flight_tokens_and_the_next_run_finishes(
    pg_env: dict[str, str], standin: TikTokStandIn, db: Engine
) -> None:
    import_accounts(pg_env, standin, 30)
    standin.latency = 1.0
    process = start(pg_env, "refresh", "--json", "--concurrency", "4")
    standin.wait_for_requests(4, timeout=60)
    process.send_signal(signal.SIGTERM)
    code, out, _ = finish(process)
    assert code == 128 + signal.SIGTERM
    report = json.loads(out)
    assert report["stopped"]["reason"] == "signal"
    assert "SIGTERM" in report["stopped"]["message"]
    assert report["counts"]["expired"] == 0
    # Every rotation TikTok made is stored: no account holds a used-up token.
    rotated = standin.refresh_count()
    assert 4 <= rotated < 30
    assert report["counts"]["refreshed"] == rotated
    assert_all_current(pg_env, db, standin)
    # Nothing was left claimed: the next run takes every remaining account.
    standin.latency = 0.0
    code, report, err = refresh(pg_env)
    assert code == 0, err
    assert report["counts"]["refreshed"] == 30 - rotated
    assert_presented_at_most_once(standin)
    assert_all_current(pg_env, db, standin)


def test_max_runtime_stops_claiming_and_says_so(
    pg_env: dict[str, str], standin: TikTokStandIn, db: Engine
) -> None:
    import_accounts(pg_env, standin, 20)
    standin.latency = 0.5
    code, report, _ = refresh(pg_env, "--concurrency", "1", "--max-runtime", "2s")
    assert code == 1
    assert report["stopped"]["reason"] == "max_runtime"
    refreshed = report["counts"]["refreshed"]
    assert 1 <= refreshed < 20
    assert report["stopped"]["left_due"] == 20 - refreshed
    assert_all_current(pg_env, db, standin)


def test_sigkill_loses_at_most_the_calls_in_flight(
    pg_env: dict[str, str], standin: TikTokStandIn, db: Engine
) -> None:
    import_accounts(pg_env, standin, 20)
    standin.latency = 2.0
    process = start(pg_env, "refresh", "--concurrency", "4")
    standin.wait_for_requests(6, timeout=60)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    # The calls in flight were answered to a dead process: those rotations are lost.
    lost = {
        open_id
        for open_id, (_, token) in stored(pg_env, db).items()
        if token != standin.current_refresh_token(open_id)
    }
    assert 1 <= len(lost) <= 4
    # The lock and the row locks died with the process's connections.
    standin.latency = 0.0
    code, report, err = refresh(pg_env)
    assert code == 1, err  # the lost accounts are rejected by TikTok: expired, reported
    assert report["counts"]["expired"] == len(lost)
    assert {problem["open_id"] for problem in report["problems"]} == lost
    state = stored(pg_env, db)
    for open_id, (status, token) in state.items():
        if open_id in lost:
            assert status == "expired"
        else:
            assert status == "active"
            assert token == standin.current_refresh_token(open_id)


def test_dropped_database_connections_fail_the_run_cleanly(
    pg_env: dict[str, str], standin: TikTokStandIn, db: Engine
) -> None:
    import_accounts(pg_env, standin, 20)
    standin.latency = 1.5
    process = start(pg_env, "refresh", "--json", "--concurrency", "4")
    standin.wait_for_requests(4, timeout=60)
    database = make_url(pg_env["TOKENREFRESH_DATABASE_URL"]).database
    with db.connect() as connection:
        killed = connection.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'tokenrefresh' AND datname = :name"
            ),
            {"name": database},
        ).scalar_one()
    assert killed >= 2  # at least the lock connection and an in-flight claim
    code, out, err = finish(process)
    assert code == 1, err
    report = json.loads(out)
    assert report["stopped"]["reason"] in ("lock_lost", "database_error")
    assert report["counts"]["expired"] == 0
    # The tokens of the calls in flight were stored on a fresh connection.
    assert_all_current(pg_env, db, standin)
    standin.latency = 0.0
    code, report, err = refresh(pg_env)
    assert code == 0, err
    assert_presented_at_most_once(standin)
    assert_all_current(pg_env, db, standin)


# ----------------------------------------------------------------------------- storms


@pytest.mark.parametrize(
    ("storm", "extra"),
    [
        pytest.param(Reply(status=503, body={"error": "server_error"}), (), id="all-5xx"),
        pytest.param(Reply(status=429, headers={"Retry-After": "1"}), (), id="all-429"),
        pytest.param(Reply(delay=1.0), ("--http-timeout", "0.2"), id="timeouts"),
        pytest.param(Reply(status=200, body="<html>oops</html>"), (), id="garbage"),
    ],
)
def test_storms_trip_the_breaker_and_expire_nobody(
    pg_env: dict[str, str], standin: TikTokStandIn, db: Engine, storm: Reply, extra: tuple[str, ...]
) -> None:
    import_accounts(pg_env, standin, 40)
    standin.default = storm
    code, report, _ = refresh(pg_env, "--concurrency", "4", *extra)
    assert code == 1
    assert report["stopped"]["reason"] == "circuit_breaker"
    assert "calls to TikTok failed" in report["stopped"]["message"]
    assert report["counts"]["expired"] == 0
    assert report["counts"]["refreshed"] == 0
    failed = report["counts"]["failed"]
    assert 1 <= failed < 40  # it stopped starting new refreshes
    assert report["stopped"]["left_due"] == 40 - failed
    assert all(status == "active" for status, _ in stored(pg_env, db).values())
    with db.connect() as connection:
        untouched = connection.execute(
            text(
                "SELECT count(*) FROM accounts "
                "WHERE consecutive_failures = 0 AND last_error IS NULL"
            )
        ).scalar_one()
    assert untouched == 40 - failed
    # TikTok is back: the next run refreshes everything that was left untouched.
    standin.default = None
    code, report, err = refresh(pg_env)
    assert code == 0, err
    assert report["counts"]["refreshed"] == 40 - failed
    # (Failed calls were retried with the same token, which TikTok had not rotated.)
    assert all(status == "active" for status, _ in stored(pg_env, db).values())


def test_one_429_slows_every_worker(
    pg_env: dict[str, str], standin: TikTokStandIn, db: Engine
) -> None:
    import_accounts(pg_env, standin, 12)
    standin.latency = 0.05
    standin.script(Reply(status=429, headers={"Retry-After": "1"}))
    code, report, err = refresh(pg_env, "--concurrency", "4")
    assert code == 0, err
    assert report["counts"]["refreshed"] == 12
    received = standin.received
    throttled_at = received[0].at
    # After the 429, only calls already in flight may start before Retry-After has passed.
    early = [r for r in received[1:] if r.at - throttled_at < 0.9]
    assert len(early) <= 3
    assert_all_current(pg_env, db, standin)


def test_rate_limit_spaces_the_calls(
    pg_env: dict[str, str], standin: TikTokStandIn, db: Engine
) -> None:
    """--rate-limit R admits a call at most every 1/R s across all workers. The spacing is
    read from when each attempt started (the clock is read as the throttle admits the call),
    not from when calls reached the stand-in: on a loaded machine the first call can arrive
    late (the process's first request pays for lazy imports and a new connection), which
    once made six calls at 10/s look 0.38 s apart instead of 0.5. Half the schedule is
    asked for: a worker would have to stall for a whole second between its admission and
    reading the clock to fail it, and without a throttle the calls start within
    milliseconds."""
    import_accounts(pg_env, standin, 5)
    code, _, err = refresh(pg_env, "--concurrency", "5", "--rate-limit", "2")
    assert code == 0, err
    assert standin.refresh_count() == 5
    with db.connect() as connection:
        started = sorted(
            connection.execute(text("SELECT attempted_at FROM refresh_attempts")).scalars()
        )
    assert len(started) == 5
    # Five calls at 2/s: admitted at least 4 x 0.5 s = 2 s apart, first to last.
    assert (started[-1] - started[0]).total_seconds() >= 1.0, started


# ----------------------------------------------------------------------------- connections


def database_connections(db: Engine) -> int:
    """Connections to the test database other than the one asking."""
    with db.connect() as connection:
        return int(
            connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
        )


def test_concurrency_64_holds_at_most_8_database_connections(
    pg_env: dict[str, str], standin: TikTokStandIn, db: Engine
) -> None:
    """Claims are leases: no connection is held across a call to TikTok, so 64 calls in
    flight share a few connections (managed PostgreSQL often allows only 100)."""
    import_accounts(pg_env, standin, 192)
    standin.latency = 0.5
    process = start(pg_env, "refresh", "--json", "--concurrency", "64")
    peak = 0
    while process.poll() is None:
        peak = max(peak, database_connections(db))
        time.sleep(0.02)
    code, out, err = finish(process)
    assert code == 0, err
    assert json.loads(out)["counts"]["refreshed"] == 192
    assert 2 <= peak <= 8, peak
    # ... while many more calls than connections were in flight at once.
    arrivals = sorted(received.at for received in standin.received)
    in_flight = max(
        sum(1 for later in arrivals[index:] if later - arrived < standin.latency / 2)
        for index, arrived in enumerate(arrivals)
    )
    assert in_flight > 16, in_flight
    assert_presented_at_most_once(standin)
    assert_all_current(pg_env, db, standin)
