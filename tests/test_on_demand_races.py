"""One exclusion for everyone: cron runs, `--account-id` runs and processes calling
`access_token` all at once, on SQLite and PostgreSQL, never present a refresh token twice.

Real processes against the loopback stand-in; what is asserted is what TikTok saw (each
refresh token presented at most once) and what the database holds at the end (every
account active, holding TikTok's newest pair).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from conftest import Cli, process_env
from helpers import AddAccounts, account, finish, set_account, start, stored_tokens
from standin import TikTokStandIn

pytestmark = pytest.mark.slow

# Each call asks for nearly the whole life of the stand-in's 2-hour tokens: a token is
# fresh enough only for a second after its refresh, so the callers keep refreshing. The
# on-demand pacing (an account refreshed less than a minute ago is not refreshed again on
# demand) is switched off here: the most contention there can be, every ask a refresh.
ASKER = """
import json, sys, time
from datetime import timedelta
from tokenrefresh import MinValidUnreachable, TokenStore, TemporarilyUnavailable
from tokenrefresh.services.refresh import on_demand

on_demand.REFRESH_PACING = timedelta(0)

open_ids, seconds = sys.argv[1].split(","), float(sys.argv[2])
outcomes = {"ok": 0, "unavailable": 0}
with TokenStore.from_env() as store:
    end = time.monotonic() + seconds
    turn = 0
    while time.monotonic() < end:
        open_id = open_ids[turn % len(open_ids)]
        turn += 1
        try:
            store.access_token(open_id=open_id, min_valid=timedelta(seconds=7199))
            outcomes["ok"] += 1
        except (TemporarilyUnavailable, MinValidUnreachable) as error:
            outcomes["unavailable"] += 1
            print(error, file=sys.stderr)
print(json.dumps(outcomes))
"""


def cron_loop(env: dict[str, str], seconds: float, *extra: str) -> subprocess.Popen[str]:
    """`refresh` again and again (every account is due for a 3h window)."""
    script = (
        "import subprocess, sys, time\n"
        f"end = time.monotonic() + {seconds}\n"
        "codes = []\n"
        "while time.monotonic() < end:\n"
        "    codes.append(subprocess.run([sys.executable, '-m', 'tokenrefresh', 'refresh',\n"
        f"        '-q', '--window', '3h', *{list(extra)!r}]).returncode)\n"
        "print(sorted(set(codes)))\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", script],
        env=process_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_cron_runs_and_on_demand_callers_never_present_a_token_twice(
    env: dict[str, str],
    cli: Cli,
    add_accounts: AddAccounts,
    standin: TikTokStandIn,
    engine: Engine,
) -> None:
    add_accounts(3)
    standin.latency = 0.05
    seconds = 6.0
    askers = [
        subprocess.Popen(
            [sys.executable, "-c", ASKER, "user0,user1,user2", str(seconds)],
            env=process_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    crons = [cron_loop(env, seconds), cron_loop(env, seconds, "--account-id", "2")]
    asked = []
    for process in askers:
        out, err = process.communicate(timeout=180)
        assert process.returncode == 0, err
        asked.append(json.loads(out))
    for process in crons:
        out, err = process.communicate(timeout=180)
        # 0: refreshed; 75: another run held the lock (SQLite: one lock for all)
        assert set(json.loads(out)) <= {0, 75}, err
    presented = standin.presented()
    assert presented, "nothing was refreshed"
    twice = [token[:12] for token, count in presented.items() if count > 1]
    assert twice == [], "refresh tokens presented more than once"
    assert all(outcome["ok"] > 0 for outcome in asked), asked
    # Every account holds TikTok's newest pair, and is active.
    key = env["TOKENREFRESH_ENCRYPTION_KEYS"]
    for open_id in ("user0", "user1", "user2"):
        assert account(engine, open_id)["status"] == "active"
        assert account(engine, open_id)["lease_owner"] is None
        assert stored_tokens(engine, open_id, key)[1] == standin.current_refresh_token(open_id)
    # And the on-demand callers did real work besides the cron runs.
    assert standin.refresh_count() > len(presented) / 2


def test_a_run_skips_an_account_an_app_just_refreshed(
    env: dict[str, str], add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    """A run started while an on-demand refresh is in flight neither waits for it nor
    refreshes the account again once it is fresh.

    The window (90m) makes user0 due before the app's refresh (1h left) and not after it
    (TikTok's 2h): whether the run reaches user0 while the app holds its lease (skipped)
    or after (not due), which a loaded machine decides, user0 is refreshed once."""
    add_accounts(2)
    for open_id in ("user0", "user1"):
        set_account(engine, open_id, access_expires_at=datetime.now(UTC) + timedelta(hours=1))
    standin.slow["user0"] = 3.0
    asker = subprocess.Popen(
        [sys.executable, "-c", ASKER, "user0", "0.1"],
        env=process_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        standin.wait_for_requests(1, timeout=30)
    except TimeoutError:
        asker.kill()
        pytest.fail(f"the app never refreshed: {asker.communicate()}")
    time.sleep(0.1)
    code, out, err = finish(start(env, "refresh", "--json", "--window", "90m"))
    asker.communicate(timeout=60)
    assert code == 0, err
    report = json.loads(out)
    assert report["counts"]["refreshed"] == 1  # user1 only
    assert report["counts"]["skipped"] in (0, 1)  # user0: leased by the app, or fresh
    assert standin.refresh_count("user0") == 1
    assert all(count == 1 for count in standin.presented().values())
