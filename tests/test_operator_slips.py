"""Operator slips lose nothing: the same import run twice, an older export, a wrong key, an
account enabled without tokens, a schema changed by hand. Each on SQLite and PostgreSQL,
through the CLI, asserting what is stored, what TikTok was sent and the exact message.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography.fernet import Fernet
from sqlalchemy import Engine, text

from conftest import Cli
from helpers import AddAccounts, account, import_line, runs, stored_tokens, table
from standin import TikTokStandIn
from tokenrefresh.storage import schema

WINDOW = ("--window", "3h")  # the stand-in's tokens live 2 h: all due


def refused_import_head() -> str:
    return (
        "error: nothing was imported: these lines would replace a newer token pair with an "
        "older one (use --force if that is really what you want):\n"
    )


# ----------------------------------------------------------------------------- imports


def test_the_same_import_run_again_after_a_refresh_is_refused(
    cli: Cli, standin: TikTokStandIn, engine: Engine, fernet_key: str
) -> None:
    issued = [standin.issue(f"user{n}") for n in range(2)]
    export = "".join(import_line(tokens) for tokens in issued)
    assert cli("accounts", "import", input=export).exit_code == 0
    refreshed = cli("refresh", *WINDOW, "--json")
    assert refreshed.json()["counts"]["refreshed"] == 2
    before = table(engine, "accounts")
    newest = {t.open_id: standin.current_refresh_token(t.open_id) for t in issued}

    again = cli("accounts", "import", input=export)

    assert again.exit_code == 2
    assert again.stdout == ""
    assert again.stderr.startswith(refused_import_head())
    lines = again.stderr.splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == ["line 1", "line 2"]
    assert (
        "open_id 'user0': this refresh token was already used, and replaced by a newer"
        in (lines[0])
    )
    assert "(the same file imported twice?)" in lines[0]
    # Nothing changed: the rotated pairs are still what is stored ...
    assert table(engine, "accounts") == before
    for tokens in issued:
        assert stored_tokens(engine, tokens.open_id, fernet_key)[1] == newest[tokens.open_id]
    # ... and the next refresh presents them, and works.
    standin.reset_log()
    assert cli("refresh", *WINDOW, "--json").json()["counts"]["refreshed"] == 2
    assert standin.presented() == dict.fromkeys(newest.values(), 1)


def test_force_imports_a_spent_token_anyway(
    cli: Cli, standin: TikTokStandIn, engine: Engine, fernet_key: str
) -> None:
    [tokens] = [standin.issue("user0")]
    assert cli("accounts", "import", input=import_line(tokens)).exit_code == 0
    assert cli("refresh", *WINDOW).exit_code == 0

    forced = cli("accounts", "import", "--force", "--json", input=import_line(tokens))

    assert forced.exit_code == 0, forced.stderr
    assert forced.json() == {"created": 0, "updated": 1, "unchanged": 0}
    assert stored_tokens(engine, "user0", fernet_key) == (tokens.access_token, tokens.refresh_token)


def test_the_same_import_twice_before_any_refresh_changes_nothing_but_the_label(
    cli: Cli, standin: TikTokStandIn, engine: Engine
) -> None:
    tokens = standin.issue("user0")
    assert cli("accounts", "import", input=import_line(tokens)).exit_code == 0
    before = account(engine, "user0")

    again = cli("accounts", "import", "--json", input=import_line(tokens, label="Shop"))

    assert again.exit_code == 0, again.stderr
    assert again.json() == {"created": 0, "updated": 0, "unchanged": 1}
    after = account(engine, "user0")
    assert after["label"] == "Shop"
    unchanged = {k: v for k, v in after.items() if k not in ("label", "updated_at")}
    assert unchanged == {k: v for k, v in before.items() if k not in ("label", "updated_at")}
    human = cli("accounts", "import", input=import_line(tokens))
    assert human.stdout == "Imported 0 account(s): 0 new, 0 updated, 1 unchanged.\n"


def test_an_import_of_a_pair_older_than_the_stored_one_is_refused(
    cli: Cli, standin: TikTokStandIn, engine: Engine, fernet_key: str
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    current = standin.issue("user0")
    assert cli("accounts", "import", input=import_line(current)).exit_code == 0
    older = standin.issue("user0")  # another consent, but exported before the stored one
    issued_at = (now - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    before = table(engine, "accounts")

    refused = cli("accounts", "import", input=import_line(older, issued_at=issued_at))

    assert refused.exit_code == 2
    assert refused.stderr.startswith(refused_import_head())
    [line] = refused.stderr.splitlines()[1:]
    assert line.startswith(f"  line 1: open_id 'user0': issued_at {issued_at} is older than")
    assert table(engine, "accounts") == before
    assert stored_tokens(engine, "user0", fernet_key)[1] == current.refresh_token
    # A newer consent is a normal re-import.
    newer = standin.issue("user0")
    assert cli("accounts", "import", input=import_line(newer)).exit_code == 0
    assert stored_tokens(engine, "user0", fernet_key)[1] == newer.refresh_token


def test_an_import_made_with_another_key_is_refused_before_any_change(
    cli: Cli, standin: TikTokStandIn, add_accounts: AddAccounts, engine: Engine
) -> None:
    add_accounts(1)
    before = {name: table(engine, name) for name in ("accounts", "key_check")}
    other_key = Fernet.generate_key().decode()

    result = cli(
        "accounts",
        "import",
        input=import_line(standin.issue("newcomer")),
        env={"TOKENREFRESH_ENCRYPTION_KEYS": other_key},
    )

    assert result.exit_code == 3
    assert result.stderr.startswith(
        "error: no key in TOKENREFRESH_ENCRYPTION_KEYS decrypts what this database stores"
    )
    assert {name: table(engine, name) for name in ("accounts", "key_check")} == before
    # Today's refresh still works with the right key: nothing was blocked.
    assert cli("refresh", *WINDOW).exit_code == 0


# ----------------------------------------------------------------------------- keys


def test_a_wrong_key_is_caught_even_when_nothing_is_due(
    cli: Cli, standin: TikTokStandIn, add_accounts: AddAccounts, engine: Engine
) -> None:
    add_accounts(2, expires_in=86_400)  # due in a day: nothing to refresh now
    wrong = {"TOKENREFRESH_ENCRYPTION_KEYS": Fernet.generate_key().decode()}
    accounts_before = table(engine, "accounts")

    for args in (("refresh",), ("refresh", "--dry-run"), ("accounts", "token", "1")):
        result = cli(*args, env=wrong)
        assert result.exit_code == 3, args
        assert "decrypts what this database stores" in result.stderr
    assert standin.received == []
    assert table(engine, "accounts") == accounts_before
    # The refused run is on record: `status` shows it.
    last = cli("status", "--json").json()["last_runs"]["refresh"]
    assert (last["outcome"], last["exit_code"]) == ("config_error", 3)
    assert [r["outcome"] for r in runs(engine)] == ["config_error"]  # the dry run is no run


def test_new_keys_take_over_a_database_that_stores_no_token(
    cli: Cli, standin: TikTokStandIn, add_accounts: AddAccounts, engine: Engine, fernet_key: str
) -> None:
    add_accounts(1)
    assert cli("accounts", "remove", "1", "--yes").exit_code == 0
    new_key = Fernet.generate_key().decode()
    newcomer = standin.issue("newcomer")

    result = cli(
        "accounts",
        "import",
        input=import_line(newcomer),
        env={"TOKENREFRESH_ENCRYPTION_KEYS": new_key},
    )

    assert result.exit_code == 0, result.stderr
    assert stored_tokens(engine, "newcomer", new_key)[1] == newcomer.refresh_token
    # From now on the old key is the wrong one.
    assert cli("refresh", *WINDOW).exit_code == 3


# ----------------------------------------------------------------------------- enable, status


def test_enable_refuses_an_account_whose_tokens_were_erased(
    cli: Cli, standin: TikTokStandIn, add_accounts: AddAccounts, engine: Engine
) -> None:
    [tokens] = add_accounts(1)
    standin.revoke(tokens.open_id)
    assert cli("refresh", *WINDOW).exit_code == 1  # rejected: expired
    assert cli("cleanup", "-q").exit_code == 0  # erases the dead tokens
    before = account(engine, "user0")
    assert (before["status"], before["refresh_token_ciphertext"]) == ("expired", None)

    result = cli("accounts", "enable", "1")

    assert result.exit_code == 2
    assert result.stderr == (
        "error: account 1 (user0) has no stored refresh token (erased after it expired), so "
        "enabling it would refresh nothing: its user must reconnect (`tokenrefresh accounts "
        "connect`, or `accounts import` of new tokens; either makes it active)\n"
    )
    assert account(engine, "user0") == before
    # A new consent brings it back.
    assert cli("accounts", "import", input=import_line(standin.issue("user0"))).exit_code == 0
    assert account(engine, "user0")["status"] == "active"


def test_an_account_without_tokens_always_needs_its_user(
    cli: Cli, add_accounts: AddAccounts, engine: Engine
) -> None:
    add_accounts(2, expires_in=86_400)
    with engine.begin() as connection:  # as an older version could leave it
        connection.execute(
            text(
                "UPDATE accounts SET refresh_token_ciphertext = NULL, "
                "access_token_ciphertext = NULL WHERE open_id = 'user1'"
            )
        )
    assert cli("refresh").exit_code == 0  # it runs, once, to be a healthy refresh

    shown = cli("status", "--json").json()
    assert shown["reconnect_needed"]["count"] == 1
    assert [a["open_id"] for a in shown["reconnect_needed"]["accounts"]] == ["user1"]
    assert shown["refresh_tokens"]["missing"] == 1
    check = cli("status", "--check")
    assert check.exit_code == 1
    assert check.stdout == "WARNING: 1 account(s) need their user to reconnect\n"


# ----------------------------------------------------------------------------- schema


def test_a_column_dropped_by_hand_stops_every_command_before_tiktok(
    cli: Cli, standin: TikTokStandIn, add_accounts: AddAccounts, engine: Engine
) -> None:
    add_accounts(1)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE accounts DROP COLUMN label"))

    for args in (("refresh", *WINDOW), ("status",), ("accounts", "list")):
        result = cli(*args)
        assert result.exit_code == 3, args
        assert result.stderr == (
            f"error: the database schema is stamped revision {schema.HEAD_REVISION} but lacks "
            "column "
            "accounts.label: it was changed outside tokenrefresh; restore it from a backup "
            "(nothing was changed)\n"
        )
    assert standin.received == []


def test_a_table_dropped_by_hand_is_named(cli: Cli, engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE spent_refresh_tokens"))
    result = cli("accounts", "list")
    assert result.exit_code == 3
    assert "lacks table spent_refresh_tokens:" in result.stderr
