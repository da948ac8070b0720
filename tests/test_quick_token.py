"""The quick path of `tokenrefresh accounts token` (cli/quick.py): where it answers, it
prints exactly what the Typer command prints; everywhere else it prints nothing, changes
nothing and leaves the answer (a refresh, a migration, an error and its exit code) to the
command. Plus the rule it shares with `OnDemand`, held together over generated states.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from hypothesis import given
from hypothesis import strategies as st

from conftest import Cli
from standin import IssuedTokens, TikTokStandIn
from tokenrefresh.adapters.crypto import TokenCipher
from tokenrefresh.base.settings import Secret
from tokenrefresh.cli import quick
from tokenrefresh.services.refresh.fresh import stored_token_serves
from tokenrefresh.services.refresh.on_demand import OnDemand
from tokenrefresh.storage.records import AccountStatus, TokenState

Quick = Callable[..., tuple[bool, str]]


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """SQLite only: the quick path reads nothing else."""
    return sqlite_url


@pytest.fixture
def run_quick(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Quick:
    """`answered(["accounts", "token", *args])` in this test's environment (plus `extra`;
    a None value unsets), and what it printed."""

    def run(*args: str, extra: dict[str, str | None] | None = None) -> tuple[bool, str]:
        capsys.readouterr()
        for name, value in {**env, **(extra or {})}.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        answered = quick.answered(["accounts", "token", *args])
        captured = capsys.readouterr()
        assert captured.err == ""
        return answered, captured.out

    return run


@pytest.fixture
def account(add_accounts: Callable[..., list[IssuedTokens]]) -> IssuedTokens:
    [issued] = add_accounts(1, expires_in=86400)
    return issued


def db_path(env: dict[str, str]) -> Path:
    return Path(env["TOKENREFRESH_DATABASE_URL"].removeprefix("sqlite:///"))


@pytest.mark.parametrize(
    "args",
    [
        ("1",),
        ("user0",),
        ("--open-id", "user0"),
        ("--open-id=user0",),
        ("1", "--min-valid", "1h"),
        ("--min-valid=0", "1"),
        ("1", "--scope", "video.publish", "--scope=user.info.basic"),
        ("1", "--scope", "video.publish,user.info.basic"),
        ("1", "--http-timeout", "5"),
        ("1", "--http-timeout=1m"),
    ],
    ids=" ".join,
)
def test_it_prints_what_the_command_prints(
    run_quick: Quick, cli: Cli, account: IssuedTokens, standin: TikTokStandIn, args: tuple[str, ...]
) -> None:
    standin.reset_log()
    assert run_quick(*args) == (True, account.access_token + "\n")
    full = cli("accounts", "token", *args)
    assert (full.exit_code, full.stdout) == (0, account.access_token + "\n")
    assert standin.received == []


def test_it_reads_the_embedded_default_once_it_exists(
    run_quick: Quick, cli: Cli, account: IssuedTokens, env: dict[str, str]
) -> None:
    unset: dict[str, str | None] = {"TOKENREFRESH_DATABASE_URL": None}
    assert run_quick("1", extra=unset) == (False, "")  # no default file yet: the command makes it
    default = cli("accounts", "import", "-", "--quiet", input=account_line(account), env=unset)
    assert default.exit_code == 0, default.stderr
    assert run_quick("1", extra=unset) == (True, account.access_token + "\n")


def account_line(account: IssuedTokens) -> str:
    import json

    return json.dumps(account.as_import_line(expires_in=86400)) + "\n"


# Each case: the arguments, the environment on top of the test's, and the command's exit
# code: the quick path stays silent, and the command (in-process, Typer alone) answers.
@pytest.mark.parametrize(
    ("args", "extra", "exit_code"),
    [
        pytest.param(("1", "--min-valid", "2d"), {}, 2, id="more than TikTok gives"),
        pytest.param(("1", "--scope", "video.list"), {}, 1, id="a scope is missing"),
        pytest.param(("99",), {}, 2, id="no such account"),
        pytest.param(("--open-id", "nobody"), {}, 2, id="no such open_id"),
        pytest.param(("1", "--help"), {}, 0, id="--help"),
        pytest.param(("1", "-h"), {}, 2, id="-h"),
        pytest.param(("--", "1"), {}, 0, id="--"),
        pytest.param(("1", "--open-id", "user0"), {}, 2, id="both keys"),
        pytest.param((), {}, 2, id="no key"),
        pytest.param(("1", "2"), {}, 2, id="two accounts"),
        pytest.param(("1", "--min-valid"), {}, 2, id="a value missing"),
        pytest.param(("1", "--min-valid", "1h", "--min-valid", "2h"), {}, 0, id="repeated"),
        pytest.param(("1", "--json"), {}, 2, id="an unknown option"),
        pytest.param(("1", "--min-valid", "90"), {}, 2, id="a duration without unit"),
        pytest.param(("1", "--min-valid", "-1h"), {}, 2, id="a negative duration"),
        pytest.param(("1", "--min-valid", "11000d"), {}, 2, id="over ten years"),
        pytest.param(("1", "--scope", "a b"), {}, 2, id="a bad scope"),
        pytest.param(("1", "--scope="), {}, 2, id="an empty scope"),
        pytest.param(("1", "--http-timeout", "0"), {}, 2, id="a timeout under the minimum"),
        pytest.param(("1", "--http-timeout="), {}, 2, id="an empty timeout"),
        pytest.param(("1",), {"TOKENREFRESH_HTTP_TIMEOUT": "100"}, 2, id="a timeout variable"),
        pytest.param(("1",), {"TOKENREFRESH_ENCRYPTION_KEYS": None}, 3, id="no keys"),
        pytest.param(("1",), {"TOKENREFRESH_ENCRYPTION_KEYS": "nokey"}, 3, id="a malformed key"),
        pytest.param(
            ("1",), {"TOKENREFRESH_DATABASE_URL": "sqlite:///relative.db"}, 3, id="relative"
        ),
        pytest.param(
            ("1",),
            {"TOKENREFRESH_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"},
            3,
            id="another database",
        ),
        pytest.param(
            ("1",), {"TOKENREFRESH_DATABASE_URL": "sqlite:////nonexistent/t.db"}, 3, id="no file"
        ),
        pytest.param(("1",), {"TOKENREFRESH_WEBHOOK_URL": "http://x"}, 3, id="bad settings"),
    ],
)
def test_anything_else_is_left_to_the_command(
    run_quick: Quick,
    cli: Cli,
    account: IssuedTokens,
    args: tuple[str, ...],
    extra: dict[str, str | None],
    exit_code: int,
) -> None:
    assert run_quick(*args, extra=extra) == (False, "")
    assert cli("accounts", "token", *args, env=extra).exit_code == exit_code


def test_a_token_that_needs_a_refresh_is_left_to_the_command(
    run_quick: Quick,
    cli: Cli,
    add_accounts: Callable[..., list[IssuedTokens]],
    standin: TikTokStandIn,
) -> None:
    [issued] = add_accounts(1, expires_in=1800)
    assert run_quick("1", "--min-valid", "1h") == (False, "")
    assert standin.received == []
    result = cli("accounts", "token", "1", "--min-valid", "1h")
    assert result.exit_code == 0, result.stderr
    assert standin.presented() == {issued.refresh_token: 1}
    assert run_quick("1", "--min-valid", "1h") == (True, result.stdout)
    assert result.stdout != issued.access_token + "\n"


def test_a_wrong_key_is_left_to_the_command(
    run_quick: Quick, cli: Cli, account: IssuedTokens
) -> None:
    other = {"TOKENREFRESH_ENCRYPTION_KEYS": Fernet.generate_key().decode("ascii")}
    assert run_quick("1", extra=other) == (False, "")
    result = cli("accounts", "token", "1", env=other)
    assert (result.exit_code, result.stdout) == (3, "")


def test_an_account_that_needs_its_user_is_left_to_the_command(
    run_quick: Quick, cli: Cli, account: IssuedTokens
) -> None:
    assert cli("accounts", "disable", "1").exit_code == 0
    assert run_quick("1") == (False, "")
    result = cli("accounts", "token", "1")
    assert (result.exit_code, result.stdout) == (1, "")
    assert "is disabled" in result.stderr


def by_hand(env: dict[str, str], statement: str) -> None:
    """Change the test's SQLite database outside tokenrefresh."""
    with sqlite3.connect(db_path(env)) as connection:
        connection.execute(statement)
    connection.close()


@pytest.mark.parametrize(
    ("statement", "exit_code", "said"),
    [
        # No key check value: the command writes one first, then the quick path answers.
        ("DELETE FROM key_check", 0, ""),
        ("ALTER TABLE outbox DROP COLUMN last_error", 3, "lacks column outbox.last_error"),
    ],
)
def test_a_database_changed_by_hand_is_left_to_the_command(
    run_quick: Quick,
    cli: Cli,
    account: IssuedTokens,
    env: dict[str, str],
    statement: str,
    exit_code: int,
    said: str,
) -> None:
    by_hand(env, statement)
    assert run_quick("1") == (False, "")
    result = cli("accounts", "token", "1")
    printed = account.access_token + "\n" if exit_code == 0 else ""
    assert (result.exit_code, result.stdout) == (exit_code, printed)
    assert said in result.stderr
    assert run_quick("1") == (exit_code == 0, printed)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE accounts SET access_expires_at = 'soon'",
        "UPDATE accounts SET access_token_ciphertext = 'not-a-fernet-token'",
    ],
    ids=["a moment that is not one", "a ciphertext no key reads"],
)
def test_a_stored_value_it_cannot_trust_is_left_to_the_command(
    run_quick: Quick, account: IssuedTokens, env: dict[str, str], statement: str
) -> None:
    """Nothing printed (no token, no part of the value), on stdout or stderr."""
    by_hand(env, statement)
    assert run_quick("1") == (False, "")


def test_an_older_revision_is_migrated_by_the_command(
    run_quick: Quick, account: IssuedTokens, env: dict[str, str]
) -> None:
    by_hand(env, "UPDATE alembic_version SET version_num = '0004'")
    assert run_quick("1") == (False, "")


def test_a_key_file_others_can_read_is_left_to_the_command_and_its_warning(
    run_quick: Quick, cli: Cli, account: IssuedTokens, env: dict[str, str], tmp_path: Path
) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text(env["TOKENREFRESH_ENCRYPTION_KEYS"])
    key_file.chmod(0o644)
    from_file = {"TOKENREFRESH_ENCRYPTION_KEYS": None}
    from_file["TOKENREFRESH_ENCRYPTION_KEYS_FILE"] = str(key_file)
    assert run_quick("1", extra=from_file) == (False, "")
    result = cli("accounts", "token", "1", env=from_file)
    assert (result.exit_code, result.stdout) == (0, account.access_token + "\n")
    assert "can be read or written by any user" in result.stderr
    key_file.chmod(0o600)
    assert run_quick("1", extra=from_file) == (True, account.access_token + "\n")


def test_the_database_is_left_as_it_was(
    run_quick: Quick, account: IssuedTokens, env: dict[str, str]
) -> None:
    path = db_path(env)
    before = {p.name: p.read_bytes() for p in path.parent.iterdir()}
    assert run_quick("1")[0] is True
    assert run_quick("1", "--min-valid", "2d") == (False, "")
    assert {p.name: p.read_bytes() for p in path.parent.iterdir()} == before


# ----------------------------------------------------------------------------- the shared rule

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
CIPHER = TokenCipher([Secret(Fernet.generate_key().decode("ascii"))])
CIPHERTEXT = CIPHER.encrypt("act.token")
moments = st.integers(min_value=-4, max_value=4).map(lambda hours: NOW + timedelta(hours=hours))
states = st.builds(
    TokenState,
    id=st.just(1),
    open_id=st.just("user0"),
    status=st.sampled_from([status.value for status in AccountStatus]),
    scope=st.sampled_from(["", "user.info.basic", "user.info.basic,video.publish"]),
    access_expires_at=moments,
    refresh_expires_at=moments,
    consecutive_failures=st.just(0),
    next_attempt_at=st.just(NOW),
    last_error=st.none(),
    access_token_ciphertext=st.sampled_from([None, CIPHERTEXT]),
    has_refresh_token=st.booleans(),
)


@given(
    state=states,
    min_valid=st.integers(min_value=0, max_value=5).map(lambda hours: timedelta(hours=hours)),
    wanted=st.sampled_from([frozenset(), frozenset({"video.publish"})]),
)
def test_the_rule_is_on_demands_own(
    state: TokenState, min_valid: timedelta, wanted: frozenset[str]
) -> None:
    """`stored_token_serves` is True exactly where OnDemand hands out the stored token."""
    on_demand = OnDemand(None, CIPHER, None, clock=lambda: NOW)  # type: ignore[arg-type]
    try:
        token = on_demand._fresh(state, min_valid, wanted)
    except Exception:
        token = None
    assert stored_token_serves(state, NOW, min_valid, wanted) == (token is not None)
    if token is not None:
        assert token.token == "act.token"
