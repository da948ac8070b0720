"""Claims at the repository level: what keeps two claimers off the same refresh token.

A claim is a lease on the account's row (`lease_owner`, `lease_expires_at`), taken in one
short transaction: a second claim of a leased account returns at once without it, on both
databases; PostgreSQL picks the row `FOR UPDATE SKIP LOCKED`, so a run started meanwhile
never waits on another's claiming transaction. A lease whose holder died ends when it runs
out, or at once if the holder was a process of this host. Every write that ends a claim is
a compare-and-set on the token generation, so a writer that read an older pair never
overwrites a newer one.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import Engine, text, update
from typer.testing import CliRunner

from conftest import process_env
from helpers import AddAccounts, account, import_line, refuse_token_writes, rejected_attempt
from standin import IssuedTokens, TikTokStandIn
from tokenrefresh.base.defaults import MAX_HTTP_TIMEOUT
from tokenrefresh.cli import app
from tokenrefresh.services.refresh.on_demand import DEFAULT_WAIT
from tokenrefresh.services.refresh.pacing import RetryPolicy
from tokenrefresh.storage import leases
from tokenrefresh.storage.claims import DEFAULT_LEASE
from tokenrefresh.storage.leases import HOST_CHARS, lease_owner, process_space
from tokenrefresh.storage.models import Account
from tokenrefresh.storage.records import NewTokens, WriteResult
from tokenrefresh.storage.repository import GrantNotStored, Repository

T = TypeVar("T")
GIVE_UP = 30.0  # seconds: only a claim that blocks on the row lock ever takes this long


def in_thread(work: Callable[[], T]) -> T:
    """Run `work` in another thread (its own connection); fail if it is still blocked."""
    results: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            results.append(work())
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(GIVE_UP)
    assert not thread.is_alive(), "blocked: the held row was waited for, not skipped"
    if errors:
        raise errors[0]
    return results[0]


def second_claim(repository: Repository, account_id: int) -> bool:
    """Whether a claim from another connection got the account."""
    with repository.claim(account_id, None) as claim:
        return claim is not None


def import_on_postgresql(
    pg_env: dict[str, str], standin: TikTokStandIn, count: int
) -> list[IssuedTokens]:
    issued = [standin.issue(f"user{n}") for n in range(count)]
    lines = "".join(import_line(tokens) for tokens in issued)
    result = CliRunner().invoke(app, ["accounts", "import", "-q"], input=lines, env=pg_env)
    assert result.exit_code == 0, result.output
    return issued


def bump_generation(engine: Engine, account_id: int) -> None:
    """Another process stores a newer token pair."""
    with engine.begin() as connection:
        connection.execute(
            update(Account)
            .where(Account.id == account_id)
            .values(token_generation=Account.token_generation + 1)
        )


def new_pair() -> NewTokens:
    """A rotated pair as a refresh stores it (ciphertexts are opaque to the repository)."""
    return NewTokens(
        access_token_ciphertext="gAAAAA-new-access",
        refresh_token_ciphertext="gAAAAA-new-refresh",
        access_expires_at=datetime.now(UTC) + timedelta(hours=2),
        refresh_expires_at=None,
        scope=None,
    )


# ----------------------------------------------------------------------------- SKIP LOCKED


def test_a_second_claim_of_a_held_account_returns_at_once_without_it(
    add_accounts: AddAccounts, engine: Engine
) -> None:
    add_accounts(2)
    repository = Repository(engine)
    with repository.claim(1, None) as held:
        assert held is not None
        row = account(engine, "user0")
        assert row["lease_owner"] == held.owner
        assert row["lease_expires_at"] > datetime.now(UTC) + DEFAULT_LEASE - timedelta(minutes=1)
        assert in_thread(lambda: second_claim(repository, 1)) is False
        assert in_thread(lambda: second_claim(repository, 2)) is True  # the others are free
    assert account(engine, "user0")["lease_owner"] is None  # released with the claim
    assert in_thread(lambda: second_claim(repository, 1)) is True


def lease_to(engine: Engine, account_id: int, owner: str, until: datetime) -> None:
    with engine.begin() as connection:
        connection.execute(
            update(Account)
            .where(Account.id == account_id)
            .values(lease_owner=owner, lease_expires_at=until)
        )


def test_a_lease_of_another_host_holds_until_it_runs_out(
    add_accounts: AddAccounts, engine: Engine
) -> None:
    """A crashed claimer elsewhere: its accounts are free again when the lease runs out."""
    add_accounts(1)
    now = datetime.now(UTC)
    lease_to(engine, 1, "another-host:4242:0badcafe", now + timedelta(minutes=3))
    assert second_claim(Repository(engine), 1) is False
    later = Repository(engine, clock=lambda: now + timedelta(minutes=3, seconds=1))
    with later.claim(1, None) as claim:
        assert claim is not None
        assert account(engine, "user0")["lease_owner"] == claim.owner


def gone_pid() -> int:
    """The pid of a process that has ended (in this pid namespace)."""
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(gone.stdout)


def test_a_lease_of_a_dead_process_on_this_host_is_taken_over_at_once(
    add_accounts: AddAccounts, engine: Engine
) -> None:
    add_accounts(2)
    here = f"{socket.gethostname()[:HOST_CHARS]}:{process_space()}"
    dead = f"{here}:{gone_pid()}:0badcafe"
    alive = f"{here}:{os.getppid()}:0badcafe"
    until = datetime.now(UTC) + timedelta(minutes=4)
    lease_to(engine, 1, dead, until)
    lease_to(engine, 2, alive, until)
    assert second_claim(Repository(engine), 1) is True
    assert second_claim(Repository(engine), 2) is False  # its holder still runs
    assert account(engine, "user1")["lease_owner"] == alive


def test_a_lease_whose_holders_pid_namespace_is_not_known_to_be_ours_holds(
    add_accounts: AddAccounts, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dead pid proves nothing unless the holder was in this pid namespace on this boot:
    an owner in the old `host:pid:nonce` form, one of another namespace (same host name),
    and any owner when this process cannot read its own identity, all hold their lease."""
    add_accounts(3)
    host, pid = socket.gethostname()[:HOST_CHARS], gone_pid()
    until = datetime.now(UTC) + timedelta(minutes=4)
    lease_to(engine, 1, f"{socket.gethostname()[:40]}:{pid}:0badcafe", until)  # old form
    lease_to(engine, 2, f"{host}:0123456789ab:{pid}:0badcafe", until)  # another namespace
    lease_to(engine, 3, f"{host}:{process_space()}:{pid}:0badcafe", until)
    repository = Repository(engine)
    assert second_claim(repository, 1) is False
    assert second_claim(repository, 2) is False
    monkeypatch.setattr(leases, "PID_NAMESPACE", Path("/nonexistent/ns/pid"))
    assert process_space() == leases.UNKNOWN_SPACE
    assert second_claim(repository, 3) is False
    monkeypatch.undo()
    assert second_claim(repository, 3) is True  # the same owner, read here: gone
    assert len(lease_owner()) <= 64


def unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    tried = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, check=False
    )
    return tried.returncode == 0


CLAIM_FROM_ANOTHER_PROCESS = """
import os, sys
from sqlalchemy.engine import make_url
from tokenrefresh.storage.engine import create_database_engine
from tokenrefresh.storage.repository import GrantNotStored, Repository

url = make_url(sys.argv[1])
if url.get_backend_name() == "postgresql":
    url = url.set(drivername="postgresql+psycopg")
holder_pid = int(sys.argv[2])
try:
    os.kill(holder_pid, 0)
    seen = "exists"
except ProcessLookupError:
    seen = "absent"
with Repository(create_database_engine(url, create=False)).claim(1, None) as claim:
    print(seen, "taken" if claim is not None else "refused")
"""


@pytest.mark.slow
@pytest.mark.skipif(not unshare_works(), reason="unshare --pid is not permitted here")
def test_a_live_lease_is_not_taken_from_another_pid_namespace(
    add_accounts: AddAccounts, engine: Engine
) -> None:
    """Two containers of one pod share a host name, not a process table: a claimer in a
    new pid namespace, where the holder's pid does not exist, must still see a live lease."""
    add_accounts(1)
    url = engine.url.render_as_string(hide_password=False)
    claimer = [sys.executable, "-c", CLAIM_FROM_ANOTHER_PROCESS, url, str(os.getpid())]
    with Repository(engine).claim(1, None) as held:
        assert held is not None
        other = subprocess.run(
            ["unshare", "--pid", "--fork", "--mount-proc", *claimer],
            env=process_env({}),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert other.returncode == 0, other.stderr
        # The holder's pid does not exist there, and still its lease holds.
        assert other.stdout.split() == ["absent", "refused"]
        assert account(engine, "user0")["lease_owner"] == held.owner
        # In this namespace, the same claim from another process is refused as well.
        here = subprocess.run(
            claimer,
            env=process_env({}),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert here.stdout.split() == ["exists", "refused"], here.stderr
    assert account(engine, "user0")["lease_owner"] is None


def test_the_lease_of_a_grant_the_database_did_not_take_is_released(
    add_accounts: AddAccounts, engine: Engine
) -> None:
    """The pair is lost, but the holder is done with the account: nobody may wait for it
    until the lease runs out."""
    add_accounts(1)
    refuse_token_writes(engine)
    with Repository(engine).claim(1, None) as claim:
        assert claim is not None
        with pytest.raises(GrantNotStored, match="the database did not take it"):
            claim.save_grant(new_pair(), [])
        row = account(engine, "user0")
        assert (row["lease_owner"], row["lease_expires_at"]) == (None, None)
    assert account(engine, "user0")["token_generation"] == 1


@pytest.mark.postgres
@pytest.mark.slow
def test_a_run_started_meanwhile_does_not_wait_on_a_held_row(
    pg_env: dict[str, str], standin: TikTokStandIn, pg_engine: Engine
) -> None:
    """`--account-id` runs take no run lock on PostgreSQL: only the row lock stands between
    this run and the held account, and SKIP LOCKED must step over it."""
    issued = import_on_postgresql(pg_env, standin, 3)
    repository = Repository(pg_engine)
    with repository.claim(1, None) as held:
        assert held is not None
        run = subprocess.Popen(
            [sys.executable, "-m", "tokenrefresh", "refresh", "--json"]
            + [arg for n in (1, 2, 3) for arg in ("--account-id", str(n))],
            env=process_env(pg_env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            out, err = run.communicate(timeout=GIVE_UP)
        except subprocess.TimeoutExpired:
            run.kill()
            run.communicate()
            pytest.fail("the run waited on the held row instead of skipping it")
    assert run.returncode == 0, err
    counts = json.loads(out)["counts"]
    assert (counts["refreshed"], counts["skipped"]) == (2, 1)
    assert standin.presented()[issued[0].refresh_token] == 0  # the held one: not touched


# ----------------------------------------------------------------------------- compare-and-set


def test_a_rejection_after_a_newer_pair_was_stored_marks_nothing(
    add_accounts: AddAccounts, engine: Engine
) -> None:
    """Nothing holds the row during the call, so another writer can store a newer pair
    meanwhile (an import); the compare-and-set must catch it."""
    add_accounts(1)
    repository = Repository(engine)
    with repository.claim(1, None) as claim:
        assert claim is not None
        bump_generation(engine, 1)
        written = claim.mark_expired("TikTok rejected the refresh token", [rejected_attempt()])
    assert written == WriteResult.LOST_RACE
    row = account(engine, "user0")
    assert (row["status"], row["last_error"], row["token_generation"]) == ("active", None, 2)


def test_a_grant_for_an_account_reimported_meanwhile_is_not_written(
    add_accounts: AddAccounts, engine: Engine
) -> None:
    """The newest consent wins: a refresh that read the old pair does not overwrite it."""
    add_accounts(1)
    repository = Repository(engine)
    before = account(engine, "user0")
    with repository.claim(1, None) as claim:
        assert claim is not None
        bump_generation(engine, 1)
        written = claim.save_grant(new_pair(), [])
    assert written == WriteResult.LOST_RACE
    row = account(engine, "user0")
    assert row["refresh_token_ciphertext"] == before["refresh_token_ciphertext"]
    assert row["access_token_ciphertext"] == before["access_token_ciphertext"]


def test_a_grant_moves_the_imported_fingerprint_to_the_spent_ones(
    add_accounts: AddAccounts, engine: Engine
) -> None:
    add_accounts(1)
    imported = account(engine, "user0")["refresh_token_fingerprint"]
    assert imported is not None
    assert len(imported) == 64
    with Repository(engine).claim(1, None) as claim:
        assert claim is not None
        claim.save_grant(new_pair(), [])
    row = account(engine, "user0")
    assert row["refresh_token_fingerprint"] is None  # the new token was never in a file
    with engine.connect() as connection:
        spent = connection.execute(
            text("SELECT fingerprint, account_id FROM spent_refresh_tokens")
        ).all()
    assert [tuple(r) for r in spent] == [(imported, 1)]


def test_one_accounts_whole_refresh_ends_within_its_lease() -> None:
    """Every attempt at the longest --http-timeout, and the longest waits between them,
    still end before the claim's lease runs out (else another could take the account)."""
    policy = RetryPolicy()
    longest = policy.attempts * MAX_HTTP_TIMEOUT + (policy.attempts - 1) * policy.max_wait
    assert longest + 30 < DEFAULT_LEASE.total_seconds()
    assert DEFAULT_WAIT.total_seconds() < DEFAULT_LEASE.total_seconds()
