"""Encryption keys: `keys generate`, a wrong key (exit 3, TikTok never called, nothing
changed), rotation to a new key with `keys rotate` and `keys check`, and ciphertexts that
never contain the token.
"""

from __future__ import annotations

import base64
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from conftest import Cli, CliResult
from helpers import assert_no_secret, new_key, sqlite_files, stored_tokens, table
from standin import IssuedTokens, TikTokStandIn
from tokenrefresh.adapters.crypto import TokenCipher
from tokenrefresh.base.settings import Secret, Settings
from tokenrefresh.services.keys import rotate_keys
from tokenrefresh.storage.records import TokenCiphertexts
from tokenrefresh.storage.repository import Repository

AddAccounts = Callable[..., list[IssuedTokens]]

WRONG_KEYS_FROM = (
    "error: no key in {source} decrypts what this database stores (a wrong key, or the key "
    "the tokens were encrypted with was removed before `tokenrefresh keys rotate`); nothing "
    "was changed. Configure the key these tokens were stored with: a new key cannot read them\n"
)
WRONG_KEYS = WRONG_KEYS_FROM.format(source="TOKENREFRESH_ENCRYPTION_KEYS")
WRONG_KEY_REFRESH = re.compile(re.escape(WRONG_KEYS))
WRONG_KEY_TOKEN = WRONG_KEYS


def ciphertexts(engine: Engine) -> dict[str, tuple[str | None, str | None]]:
    with engine.connect() as connection:
        result = connection.execute(
            text("SELECT open_id, access_token_ciphertext, refresh_token_ciphertext FROM accounts")
        )
        return {r.open_id: (r.access_token_ciphertext, r.refresh_token_ciphertext) for r in result}


def decrypts_with(key: str, ciphertext: str) -> str | None:
    try:
        return Fernet(key).decrypt(ciphertext).decode()
    except InvalidToken:
        return None


# ----------------------------------------------------------------------------- generate


def test_generate_prints_a_new_fernet_key_and_needs_no_configuration(cli: Cli) -> None:
    nothing = {
        "TOKENREFRESH_ENCRYPTION_KEYS": None,
        "TOKENREFRESH_DATABASE_URL": "not a url",
        "TIKTOK_CLIENT_KEY": None,
        "TIKTOK_CLIENT_SECRET": None,
    }
    first = cli("keys", "generate", env=nothing)
    second = cli("keys", "generate", env=nothing)
    assert first.exit_code == 0, first.stderr
    assert second.exit_code == 0, second.stderr
    assert first.stderr == ""
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}=\n", first.stdout)
    key = first.stdout.strip()
    assert len(base64.urlsafe_b64decode(key)) == 32
    assert Fernet(key).decrypt(Fernet(key).encrypt(b"act.x")) == b"act.x"
    assert second.stdout != first.stdout
    settings = Settings.from_env({"TOKENREFRESH_ENCRYPTION_KEYS": key})
    assert [k.reveal() for k in settings.require_encryption_keys()] == [key]


def test_a_generated_key_works_for_import_and_token(
    cli: Cli, standin: TikTokStandIn, engine: Engine
) -> None:
    key = cli("keys", "generate").stdout.strip()
    tokens = standin.issue("user0")
    line = (
        f'{{"open_id": "user0", "access_token": "{tokens.access_token}", '
        f'"refresh_token": "{tokens.refresh_token}", "expires_in": 7200, '
        '"refresh_expires_in": 86400}\n'
    )
    env = {"TOKENREFRESH_ENCRYPTION_KEYS": key}
    assert cli("accounts", "import", input=line, env=env).exit_code == 0
    access, refresh = ciphertexts(engine)["user0"]
    assert access is not None
    assert refresh is not None
    assert decrypts_with(key, access) == tokens.access_token
    assert decrypts_with(key, refresh) == tokens.refresh_token
    shown = cli("accounts", "token", "--open-id", "user0", env=env)
    assert shown.stdout == tokens.access_token + "\n"


# ----------------------------------------------------------------------------- a wrong key


def test_refresh_with_a_wrong_key_exits_3_and_calls_nothing(
    cli: Cli, add_accounts: AddAccounts, engine: Engine, standin: TikTokStandIn, fernet_key: str
) -> None:
    issued = add_accounts(3)
    accounts_before = table(engine, "accounts")
    attempts_before = table(engine, "refresh_attempts")
    wrong = new_key()

    result = cli("refresh", "--window", "3h", env={"TOKENREFRESH_ENCRYPTION_KEYS": wrong})

    assert result.exit_code == 3
    assert result.stdout == ""
    assert WRONG_KEY_REFRESH.fullmatch(result.stderr), result.stderr
    assert standin.received == []
    assert table(engine, "accounts") == accounts_before
    assert table(engine, "refresh_attempts") == attempts_before
    # The keys are checked before the run starts: the run is recorded as refused, for status.
    [run] = table(engine, "runs")
    assert (run["outcome"], run["exit_code"], run["counts"]) == ("config_error", 3, "{}")
    assert run["message"] == WRONG_KEYS.removeprefix("error: ").rstrip("\n")
    secrets = [fernet_key, wrong] + [t.refresh_token for t in issued]
    assert_no_secret(result.stdout + result.stderr, *secrets, *[t.access_token for t in issued])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_refresh_with_a_wrong_key_leaves_the_accounts_of_a_sqlite_file_untouched(
    cli: Cli, add_accounts: AddAccounts, engine: Engine, standin: TikTokStandIn
) -> None:
    """On SQLite: everything is exactly as it was, as dumped by SQLite."""
    add_accounts(2)
    engine.dispose()

    def dump() -> list[str]:
        database = make_url(str(engine.url)).database
        assert database is not None
        with sqlite3.connect(database) as connection:
            lines = list(connection.iterdump())
        connection.close()
        return lines

    before = dump()
    result = cli("refresh", "--window", "3h", env={"TOKENREFRESH_ENCRYPTION_KEYS": new_key()})
    assert result.exit_code == 3
    assert standin.received == []
    # Not a byte of the accounts changed; the refused run is recorded, for `status`, and
    # announced (run.failed).
    after = dump()
    added = sorted(line for line in after if line not in before)
    assert [line for line in before if line not in after] == []
    assert len(added) == 2
    assert added[0].startswith('INSERT INTO "outbox" VALUES(1,\'evt_')
    assert "'run.failed'" in added[0]
    assert added[1].startswith("INSERT INTO \"runs\" VALUES(1,'refresh'")
    assert "'config_error',3," in added[1]


def test_token_with_a_wrong_key_exits_3(
    cli: Cli, add_accounts: AddAccounts, engine: Engine, fernet_key: str
) -> None:
    issued = add_accounts(1)
    before = table(engine, "accounts")
    wrong = new_key()
    result = cli(
        "accounts", "token", "--open-id", "user0", env={"TOKENREFRESH_ENCRYPTION_KEYS": wrong}
    )
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr == WRONG_KEY_TOKEN
    assert table(engine, "accounts") == before
    assert_no_secret(result.stderr, fernet_key, wrong, issued[0].access_token)


def test_a_wrong_key_from_a_file_names_the_file_and_never_a_new_key(
    cli: Cli, add_accounts: AddAccounts, engine: Engine, fernet_key: str, tmp_path: Path
) -> None:
    """Issue 18: the cron recipe's new key file over the quick start's database."""
    add_accounts(1)
    before = table(engine, "accounts")
    wrong = new_key()
    key_file = tmp_path / "encryption-keys"
    key_file.write_text(wrong + "\n")
    key_file.chmod(0o600)
    from_file = {
        "TOKENREFRESH_ENCRYPTION_KEYS": None,
        "TOKENREFRESH_ENCRYPTION_KEYS_FILE": str(key_file),
    }

    result = cli("refresh", "--window", "3h", "-q", env=from_file)

    assert result.exit_code == 3
    assert result.stdout == ""
    source = f"TOKENREFRESH_ENCRYPTION_KEYS_FILE ({key_file})"
    assert result.stderr == WRONG_KEYS_FROM.format(source=source)
    assert "generate" not in result.stderr
    assert (
        table(engine, "accounts")[0]["refresh_token_ciphertext"]
        == before[0]["refresh_token_ciphertext"]
    )
    assert_no_secret(result.stderr, fernet_key, wrong)


def test_check_with_a_wrong_key_lists_the_accounts_and_exits_3(
    cli: Cli, add_accounts: AddAccounts, engine: Engine
) -> None:
    add_accounts(2)
    ids = [row["id"] for row in table(engine, "accounts")]
    result = cli("keys", "check", env={"TOKENREFRESH_ENCRYPTION_KEYS": new_key()})
    assert result.exit_code == 3
    assert result.stdout == (
        "key #1 (encrypts new tokens): 0 stored token(s)\n"
        f"No key decrypts the tokens of account(s): {ids[0]}, {ids[1]}\n"
    )
    as_json = cli("keys", "check", "--json", env={"TOKENREFRESH_ENCRYPTION_KEYS": new_key()})
    assert as_json.exit_code == 3
    assert as_json.json() == {
        "tokens_by_key": {"1": 0},
        "undecryptable_accounts": ids,
        "old_keys_in_use": False,
    }


# ----------------------------------------------------------------------------- rotation


def keys_check(cli: Cli, env: dict[str, str], stdout: str) -> tuple[CliResult, dict[str, Any]]:
    """`keys check` succeeds and prints exactly stdout: its result, and the document of
    `keys check --json`."""
    check = cli("keys", "check", env=env)
    assert check.exit_code == 0, check.stderr
    assert check.stdout == stdout
    return check, cli("keys", "check", "--json", env=env).json()


def test_key_rotation_end_to_end(
    cli: Cli, add_accounts: AddAccounts, engine: Engine, standin: TikTokStandIn
) -> None:
    old = cli("keys", "generate").stdout.strip()
    new = cli("keys", "generate").stdout.strip()
    with_old = {"TOKENREFRESH_ENCRYPTION_KEYS": old}
    both = {"TOKENREFRESH_ENCRYPTION_KEYS": f"{new},{old}"}
    with_new = {"TOKENREFRESH_ENCRYPTION_KEYS": new}

    issued = [standin.issue(f"user{n}") for n in range(2)]
    lines = "".join(
        f'{{"open_id": "{t.open_id}", "access_token": "{t.access_token}", '
        f'"refresh_token": "{t.refresh_token}", "expires_in": 7200, '
        '"refresh_expires_in": 86400}\n'
        for t in issued
    )
    assert cli("accounts", "import", input=lines, env=with_old).exit_code == 0
    before = table(engine, "accounts")

    check, check_json = keys_check(
        cli,
        both,
        "key #1 (encrypts new tokens): 0 stored token(s)\n"
        "key #2 (decrypts only): 4 stored token(s)\n"
        "Some tokens still need older keys: run `tokenrefresh keys rotate`.\n",
    )
    assert check_json == {
        "tokens_by_key": {"1": 0, "2": 4},
        "undecryptable_accounts": [],
        "old_keys_in_use": True,
    }

    rotated = cli("keys", "rotate", env=both)
    assert rotated.exit_code == 0, rotated.stderr
    assert rotated.stdout == "Re-encrypted the tokens of 2 account(s) with key #1.\n"

    after = table(engine, "accounts")
    for old_row, new_row, tokens in zip(before, after, issued, strict=True):
        assert new_row["access_token_ciphertext"] != old_row["access_token_ciphertext"]
        assert new_row["refresh_token_ciphertext"] != old_row["refresh_token_ciphertext"]
        assert decrypts_with(new, new_row["access_token_ciphertext"]) == tokens.access_token
        assert decrypts_with(new, new_row["refresh_token_ciphertext"]) == tokens.refresh_token
        assert decrypts_with(old, new_row["refresh_token_ciphertext"]) is None
        # Same tokens, new encryption: nothing else about the account changed.
        unchanged = {"access_token_ciphertext", "refresh_token_ciphertext"}
        assert {k: v for k, v in new_row.items() if k not in unchanged} == {
            k: v for k, v in old_row.items() if k not in unchanged
        }

    recheck, recheck_json = keys_check(
        cli,
        both,
        "key #1 (encrypts new tokens): 4 stored token(s)\n"
        "key #2 (decrypts only): 0 stored token(s)\n"
        "No token needs the older keys: they can be removed.\n",
    )
    assert recheck_json["old_keys_in_use"] is False

    # The old key removed: everything still works.
    token = cli("accounts", "token", "--open-id", "user0", env=with_new)
    assert token.exit_code == 0, token.stderr
    assert token.stdout == issued[0].access_token + "\n"
    refreshed = cli("refresh", "--window", "3h", "--json", env=with_new)
    assert refreshed.exit_code == 0, refreshed.stderr
    assert refreshed.json()["counts"]["refreshed"] == 2
    assert all(standin.presented()[t.refresh_token] == 1 for t in issued)

    # Only the old key: nothing can be read, and TikTok is not called.
    received = len(standin.received)
    stale_token = cli("accounts", "token", "--open-id", "user0", env=with_old)
    assert stale_token.exit_code == 3
    assert stale_token.stderr == WRONG_KEY_TOKEN
    stale_refresh = cli("refresh", "--window", "3h", env=with_old)
    assert stale_refresh.exit_code == 3
    assert WRONG_KEY_REFRESH.fullmatch(stale_refresh.stderr), stale_refresh.stderr
    assert len(standin.received) == received

    outputs = "".join(
        r.stdout + r.stderr
        for r in (check, rotated, recheck, refreshed, stale_token, stale_refresh)
    )
    assert_no_secret(outputs, old, new, *standin.issued_tokens)


def test_rotate_json_and_quiet(cli: Cli, add_accounts: AddAccounts) -> None:
    add_accounts(3)
    as_json = cli("keys", "rotate", "--json")
    assert as_json.exit_code == 0, as_json.stderr
    assert as_json.json() == {"rotated": 3, "skipped": 0}
    quiet = cli("keys", "rotate", "--quiet")
    assert quiet.exit_code == 0, quiet.stderr
    assert quiet.stdout == ""


def test_rotate_without_accounts(cli: Cli) -> None:
    result = cli("keys", "rotate")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Re-encrypted the tokens of 0 account(s) with key #1.\n"


def test_rotate_changes_nothing_when_a_token_cannot_be_decrypted(
    cli: Cli, add_accounts: AddAccounts, engine: Engine, fernet_key: str
) -> None:
    add_accounts(2, prefix="readable")
    lost_key = new_key()
    before = table(engine, "accounts")
    # One account whose tokens were encrypted with a key nobody has any more. (An import
    # with that key is refused now: the key check value tells it is the wrong one.)
    add_accounts(1, prefix="lost")
    lost_id = next(r["id"] for r in table(engine, "accounts") if r["open_id"] == "lost0")
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE accounts SET access_token_ciphertext = :access, "
                "refresh_token_ciphertext = :refresh WHERE id = :id"
            ),
            {
                "access": Fernet(lost_key).encrypt(b"act.lost-account").decode(),
                "refresh": Fernet(lost_key).encrypt(b"rft.lost-account").decode(),
                "id": lost_id,
            },
        )
    snapshot = table(engine, "accounts")
    assert snapshot[: len(before)] == before

    new = new_key()
    keys = {"TOKENREFRESH_ENCRYPTION_KEYS": f"{new},{fernet_key}"}
    result = cli("keys", "rotate", env=keys)
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr == (
        "error: no key in TOKENREFRESH_ENCRYPTION_KEYS decrypts the tokens of account(s) "
        f"{lost_id}; nothing was re-encrypted\n"
    )
    assert table(engine, "accounts") == snapshot
    assert_no_secret(result.stderr, new, fernet_key, lost_key, "act.lost-account")

    check = cli("keys", "check", env=keys)
    assert check.exit_code == 3
    assert check.stdout == (
        "key #1 (encrypts new tokens): 0 stored token(s)\n"
        "key #2 (decrypts only): 4 stored token(s)\n"
        f"No key decrypts the tokens of account(s): {lost_id}\n"
    )


# ----------------------------------------------------------------------------- at rest


def test_ciphertexts_never_contain_the_token(
    cli: Cli, add_accounts: AddAccounts, engine: Engine, standin: TikTokStandIn, fernet_key: str
) -> None:
    issued = add_accounts(3)
    refreshed = cli("refresh", "--window", "3h")
    assert refreshed.exit_code == 0, refreshed.stderr
    stored = ciphertexts(engine)
    assert len(stored) == 3
    every_token = standin.issued_tokens
    assert len(every_token) == 12  # 3 accounts x (issued + refreshed) x (access + refresh)
    plaintexts = set()
    for access, refresh in stored.values():
        assert access is not None
        assert refresh is not None
        for ciphertext in (access, refresh):
            for token in every_token:
                assert token not in ciphertext
                assert token[4:] not in ciphertext  # not even without its act./rft. prefix
            plaintext = decrypts_with(fernet_key, ciphertext)
            assert plaintext in every_token
            plaintexts.add(plaintext)
    assert plaintexts.isdisjoint({t.access_token for t in issued})  # all replaced
    assert len(plaintexts) == 6
    with engine.connect() as connection:
        everything = " ".join(
            str(value)
            for table in ("accounts", "refresh_attempts", "runs")
            for r in connection.execute(text(f"SELECT * FROM {table}"))
            for value in r
        )
    for token in every_token:
        assert token not in everything


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_sqlite_file_never_holds_a_token(
    cli: Cli, add_accounts: AddAccounts, engine: Engine, standin: TikTokStandIn
) -> None:
    add_accounts(3)
    assert cli("refresh", "--window", "3h").exit_code == 0
    files = sqlite_files(engine)
    assert files
    for content in files.values():
        for token in standin.issued_tokens:
            assert token.encode() not in content
            assert token[4:].encode() not in content


def test_rotation_skips_a_row_that_a_refresh_rewrote_meanwhile(
    cli: Cli, add_accounts: AddAccounts, engine: Engine, standin: TikTokStandIn, fernet_key: str
) -> None:
    """`keys rotate` reads a batch, re-encrypts it, writes it back: a refresh that stored a
    new pair in between must not be overwritten with the old, re-encrypted (spent) token."""
    issued = add_accounts(3)
    new = new_key()
    both = {"TOKENREFRESH_ENCRYPTION_KEYS": f"{new},{fernet_key}"}

    class RefreshedWhileRotating(Repository):
        """The real repository; a refresh of account 1 lands between read and write."""

        def replace_ciphertexts(self, batch: list[TokenCiphertexts]) -> int:  # type: ignore[override]
            refreshed = cli("refresh", "--window", "3h", "--account-id", "1", env=both)
            assert refreshed.exit_code == 0, refreshed.stderr
            return super().replace_ciphertexts(batch)

    cipher = TokenCipher([Secret(new), Secret(fernet_key)])
    report = rotate_keys(RefreshedWhileRotating(engine), cipher)

    assert (report.rotated, report.skipped) == (2, 1)
    newest = standin.current_refresh_token("user0")
    assert newest != issued[0].refresh_token
    assert stored_tokens(engine, "user0", new)[1] == newest  # the refresh's pair stands
    for tokens in issued[1:]:  # the others: the same tokens, now on the new key
        assert stored_tokens(engine, tokens.open_id, new)[1] == tokens.refresh_token
    # And the next refresh presents the newest token, and it works.
    standin.reset_log()
    again = cli("refresh", "--window", "3h", "--json", env=both)
    assert again.json()["counts"]["refreshed"] == 3
    assert standin.presented()[newest] == 1
