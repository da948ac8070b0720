"""What keeps an app asking in a loop from spending refresh tokens for nothing.

A pair the database did not take suspends the store's refreshes (no call to TikTok) until
the database takes writes again; an account refreshed a moment ago is not refreshed again
on demand, whatever `min_valid` asks or TikTok's answer said; `min_valid` is bounded; the
library's log lines speak of the call, not of a run, and reach no app that configured no
logging. A real SQLite and PostgreSQL and the loopback stand-in for TikTok.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from conftest import Cli, process_env
from helpers import AddAccounts, account, all_rows, refuse_token_writes, set_account
from standin import Reply, TikTokStandIn
from tokenrefresh import (
    InvalidArgument,
    MinValidUnreachable,
    RefreshesSuspended,
    TemporarilyUnavailable,
    TokenRefreshError,
    TokenStore,
)
from tokenrefresh.errors import EXIT_USAGE
from tokenrefresh.services.refresh.on_demand import PROBE_INTERVAL
from tokenrefresh.storage.repository import Repository

SOON = timedelta(minutes=1)  # a stored token this close to its end needs a refresh


def refreshes(standin: TikTokStandIn) -> int:
    return sum(1 for received in standin.received if received.path.endswith("/token/"))


def with_fields(**fields: Any) -> Any:
    """A twist: TikTok's normal (rotating) answer with these fields changed."""
    return lambda payload: (200, {**payload, **fields})


# ----------------------------------------------------------------------------- lost grants


@pytest.mark.slow
def test_after_a_grant_the_database_refused_no_more_tokens_are_spent_until_it_takes_writes(
    env: dict[str, str], add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    add_accounts(4)
    for n in range(4):
        set_account(engine, f"user{n}", access_expires_at=datetime.now(UTC) + SOON)
    standin.reset_log()
    refuse_token_writes(engine)
    with TokenStore.from_env(env) as store:
        with pytest.raises(TemporarilyUnavailable, match="the database did not take it"):
            store.access_token(open_id="user0")
        assert refreshes(standin) == 1  # that pair is lost, as before
        # Its holder is done with it: nobody waits 30 s for its lease.
        row = account(engine, "user0")
        assert (row["lease_owner"], row["lease_expires_at"]) == (None, None)
        for open_id in ("user1", "user2", "user3"):
            with pytest.raises(RefreshesSuspended) as raised:
                store.access_token(open_id=open_id)
            assert isinstance(raised.value, TemporarilyUnavailable)
            assert isinstance(raised.value, TokenRefreshError)
            assert str(raised.value).startswith(
                "refreshes are suspended: the new token pair TikTok issued for account 1 "
                "could not be stored (database error: "
            )
            assert "until the database takes writes again" in str(raised.value)
        time.sleep(PROBE_INTERVAL)
        with pytest.raises(RefreshesSuspended):  # the probe write is refused too
            store.access_token(open_id="user1")
        assert refreshes(standin) == 1  # not one more token spent
        # A token still good enough is handed out meanwhile.
        assert store.access_token(open_id="user1", min_valid=timedelta(seconds=1)).token
        refuse_token_writes(engine, refuse=False)
        time.sleep(PROBE_INTERVAL)
        token = store.access_token(open_id="user1")
        assert token.expires_at > datetime.now(UTC) + timedelta(hours=1)
        assert refreshes(standin) == 2
    assert account(engine, "user1")["token_generation"] == 2


REFUSE_NEW_CIPHERTEXTS = {
    "sqlite": [
        "CREATE TRIGGER refuse_ciphertexts BEFORE UPDATE OF refresh_token_ciphertext ON accounts "
        "WHEN NEW.refresh_token_ciphertext IS NOT OLD.refresh_token_ciphertext "
        "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_ciphertexts() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.refresh_token_ciphertext IS DISTINCT FROM OLD.refresh_token_ciphertext "
        "THEN RAISE EXCEPTION 'No space left on device'; END IF; RETURN NEW; END $$",
        "CREATE TRIGGER refuse_ciphertexts BEFORE UPDATE ON accounts FOR EACH ROW "
        "EXECUTE FUNCTION refuse_ciphertexts()",
    ],
}


def test_the_write_probe_tries_what_a_grant_writes_and_changes_nothing(
    add_accounts: AddAccounts, engine: Engine
) -> None:
    add_accounts(1)
    repository = Repository(engine)
    before = account(engine, "user0")
    assert repository.takes_token_writes(1) is True
    assert account(engine, "user0") == before  # not even updated_at
    refuse_token_writes(engine)  # a new generation refused
    assert repository.takes_token_writes(1) is False
    refuse_token_writes(engine, refuse=False)
    with engine.begin() as connection:  # only a new ciphertext refused
        for statement in REFUSE_NEW_CIPHERTEXTS[engine.dialect.name]:
            connection.execute(text(statement))
    assert repository.takes_token_writes(1) is False
    assert account(engine, "user0") == before


# ----------------------------------------------------------------------------- min_valid


def test_a_min_valid_tiktok_cannot_meet_rotates_the_account_once(
    env: dict[str, str], add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    """TikTok's tokens last 2 hours: 100 asks for 3 hours are one refresh, then refusals
    that name what TikTok gives, not TemporarilyUnavailable (a retry loop would rotate)."""
    add_accounts(1)
    standin.reset_log()
    errors: list[MinValidUnreachable] = []
    with TokenStore.from_env(env) as store, TokenStore.from_env(env) as other_process:
        for n in range(100):
            with pytest.raises(MinValidUnreachable) as raised:
                (store if n % 2 else other_process).access_token(
                    open_id="user0", min_valid=timedelta(hours=3)
                )
            errors.append(raised.value)
        # What TikTok does give is still handed out.
        assert store.access_token(open_id="user0", min_valid=timedelta(hours=1)).token
    assert refreshes(standin) == 1
    assert standin.refresh_count("user0") == 1
    assert all(not isinstance(error, TemporarilyUnavailable) for error in errors)
    assert all(isinstance(error, TokenRefreshError) for error in errors)
    assert {str(error) for error in errors} == {str(errors[-1])}
    message = str(errors[0])
    assert "TikTok's access tokens last 2h; asked for 3h." in message
    assert message.startswith("account 1 (user0) was refreshed at ")
    assert message.endswith("ask with a smaller min_valid")
    assert account(engine, "user0")["token_generation"] == 2


@pytest.mark.parametrize(
    "expires_in", [0, -7200, "soon", None], ids=["0", "negative", "text", "null"]
)
def test_an_answer_without_a_usable_lifetime_is_refreshed_at_most_once(
    env: dict[str, str],
    add_accounts: AddAccounts,
    standin: TikTokStandIn,
    engine: Engine,
    expires_in: Any,
) -> None:
    add_accounts(1)
    set_account(engine, "user0", access_expires_at=datetime.now(UTC) + SOON)
    standin.reset_log()
    standin.twist("user0", *[with_fields(expires_in=expires_in)] * 100)
    with TokenStore.from_env(env) as store:
        for _ in range(100):
            with pytest.raises(MinValidUnreachable, match="came without a usable lifetime"):
                store.access_token(open_id="user0")
    assert refreshes(standin) == 1
    assert account(engine, "user0")["token_generation"] == 2


def test_accounts_token_with_a_min_valid_tiktok_cannot_meet(
    cli: Cli, add_accounts: AddAccounts, standin: TikTokStandIn
) -> None:
    add_accounts(1)
    standin.reset_log()
    for _ in range(3):
        asked = cli("accounts", "token", "--open-id", "user0", "--min-valid", "3h")
        assert asked.exit_code == EXIT_USAGE
        assert asked.stdout == ""
        assert "TikTok's access tokens last 2h; asked for 3h." in asked.stderr
    assert refreshes(standin) == 1


def test_a_revoke_right_after_a_refresh_without_a_lifetime_changes_nothing(
    cli: Cli, add_accounts: AddAccounts, standin: TikTokStandIn, engine: Engine
) -> None:
    """The pacing leaves revoke no token to present: it says to try again, and neither marks
    the account revoked (its tokens may still work at TikTok) nor asks about min_valid."""
    add_accounts(1)
    set_account(engine, "user0", access_expires_at=datetime.now(UTC) + SOON)
    standin.twist("user0", with_fields(expires_in=0))
    assert cli("accounts", "token", "--open-id", "user0").exit_code == EXIT_USAGE
    before = all_rows(engine)["accounts"]
    standin.reset_log()
    result = cli("accounts", "revoke", "1", "--yes")
    assert result.exit_code == 1, result.stderr
    assert result.stderr == (
        "error: revoking account 1 failed: it was refreshed moments ago and TikTok's answer "
        "gave its access token no usable lifetime; nothing was changed, try again in a "
        "minute\n"
    )
    assert all_rows(engine)["accounts"] == before
    assert standin.received == []  # neither a refresh nor a revoke


def test_min_valid_beyond_the_maximum_or_negative_is_a_usage_error(
    env: dict[str, str], add_accounts: AddAccounts, standin: TikTokStandIn
) -> None:
    add_accounts(1)
    standin.reset_log()
    with TokenStore.from_env(env) as store:
        for too_long in (timedelta(days=3_000_000), timedelta(days=3651), timedelta.max):
            with pytest.raises(InvalidArgument) as raised:
                store.access_token(open_id="user0", min_valid=too_long)
            assert str(raised.value) == "min_valid must be at most 3650d (10 years)"
            assert isinstance(raised.value, TokenRefreshError)
            assert isinstance(raised.value, ValueError)
        with pytest.raises(InvalidArgument, match=r"^min_valid must not be negative$"):
            store.access_token(open_id="user0", min_valid=timedelta(seconds=-1))
    assert refreshes(standin) == 0


# ----------------------------------------------------------------------------- logging

RATE_LIMITED = Reply(429, headers={"Retry-After": "120"})
APP = """
from datetime import timedelta
from tokenrefresh import TokenStore, TemporarilyUnavailable
with TokenStore.from_env() as store:
    try:
        store.access_token(open_id="user0", min_valid=timedelta(hours=3))
    except TemporarilyUnavailable as error:
        print(type(error).__name__)
"""


def test_an_app_without_logging_configured_hears_nothing_from_a_failed_refresh(
    env: dict[str, str], add_accounts: AddAccounts, standin: TikTokStandIn
) -> None:
    add_accounts(1)
    standin.reset_log()
    standin.script(RATE_LIMITED, open_id="user0")
    app = subprocess.run(
        [sys.executable, "-c", APP],
        env=process_env(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (app.returncode, app.stdout, app.stderr) == (0, "TemporarilyUnavailable\n", "")
    assert refreshes(standin) == 1


def test_on_demand_log_lines_speak_of_the_call_not_of_a_run(
    env: dict[str, str],
    add_accounts: AddAccounts,
    standin: TikTokStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    add_accounts(1)  # the CLI in this process took the root logger's handlers: listen here
    standin.script(RATE_LIMITED, open_id="user0")
    library = logging.getLogger("tokenrefresh")
    library.addHandler(caplog.handler)
    try:
        with (
            caplog.at_level(logging.DEBUG, logger="tokenrefresh"),
            TokenStore.from_env(env) as store,
            pytest.raises(TemporarilyUnavailable),
        ):
            store.access_token(open_id="user0", min_valid=timedelta(hours=3))
    finally:
        library.removeHandler(caplog.handler)
    messages = [record.getMessage() for record in caplog.records]
    assert any("TikTok asked to wait 120s" in message for message in messages), messages
    for message in messages:
        assert not re.search(r"\brun\b|--max-runtime|remaining accounts", message), message
