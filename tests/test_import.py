"""`accounts import`: JSON Lines in TikTok's token response shape, all or nothing, never a
token in the output; a re-import is an upsert by open_id.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Engine, text

from conftest import Cli
from helpers import account, set_account, snapshot
from tokenrefresh.base.clock import utcnow
from tokenrefresh.storage.models import AccountStatus
from tokenrefresh.storage.records import AccountView
from tokenrefresh.storage.repository import Repository

ERROR_HEAD = "error: nothing was imported; fix these lines and run the import again:\n"


def record(open_id: str = "user0", **fields: Any) -> dict[str, Any]:
    """One import line, with tokens unique to the open_id; None values are left out."""
    line: dict[str, Any] = {
        "open_id": open_id,
        "access_token": f"act.access-{open_id}-Zq8wT3",
        "refresh_token": f"rft.refresh-{open_id}-Yp7vS2",
        "expires_in": 7200,
        "refresh_expires_in": 15_552_000,
        "scope": "user.info.basic,video.publish",
        "token_type": "Bearer",
    }
    line.update(fields)
    return {name: value for name, value in line.items() if value is not None}


def jsonl(*records: dict[str, Any] | str) -> str:
    return "".join((item if isinstance(item, str) else json.dumps(item)) + "\n" for item in records)


def tokens_in(*records: dict[str, Any]) -> list[str]:
    return [
        str(value)
        for item in records
        for name, value in item.items()
        if name in ("access_token", "refresh_token") and str(value).strip()
    ]


def ciphertexts(engine: Engine, open_id: str) -> tuple[str, str]:
    row = account(engine, open_id)
    return row["access_token_ciphertext"], row["refresh_token_ciphertext"]


def stored_tokens(engine: Engine, fernet_key: str, open_id: str) -> tuple[str, str]:
    """The plaintext tokens stored for open_id, decrypted here with the test's key."""
    fernet = Fernet(fernet_key)
    access, refresh = ciphertexts(engine, open_id)
    return fernet.decrypt(access).decode(), fernet.decrypt(refresh).decode()


def view(repository: Repository, open_id: str) -> AccountView:
    found = repository.find_account(open_id)
    assert found is not None
    return found


def import_ok(cli: Cli, *records: dict[str, Any]) -> None:
    result = cli("accounts", "import", input=jsonl(*records))
    assert result.exit_code == 0, result.stderr


# ----------------------------------------------------------------------------- happy paths


def test_import_from_stdin(
    cli: Cli, engine: Engine, repository: Repository, fernet_key: str
) -> None:
    first = record("user0", label="Shop A")
    second = record("user1")
    result = cli("accounts", "import", "-", input=jsonl(first, second))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Imported 2 account(s): 2 new, 0 updated.\n"
    assert result.stderr == ""

    accounts = repository.list_accounts()
    assert [(a.open_id, a.label, a.status) for a in accounts] == [
        ("user0", "Shop A", "active"),
        ("user1", None, "active"),
    ]
    assert all(a.scope == "user.info.basic,video.publish" and a.has_tokens for a in accounts)
    assert stored_tokens(engine, fernet_key, "user0") == (
        first["access_token"],
        first["refresh_token"],
    )
    assert stored_tokens(engine, fernet_key, "user1") == (
        second["access_token"],
        second["refresh_token"],
    )
    for open_id, tokens in (("user0", tokens_in(first)), ("user1", tokens_in(second))):
        for ciphertext in ciphertexts(engine, open_id):
            assert all(token not in ciphertext for token in tokens)
    for token in tokens_in(first, second):
        assert token not in result.stdout + result.stderr


def test_import_without_argument_reads_stdin(cli: Cli, repository: Repository) -> None:
    result = cli("accounts", "import", input=jsonl(record("user0")))
    assert result.exit_code == 0, result.stderr
    assert [a.open_id for a in repository.list_accounts()] == ["user0"]


def test_import_from_a_file(
    cli: Cli, tmp_path: Path, repository: Repository, engine: Engine, fernet_key: str
) -> None:
    path = tmp_path / "accounts.jsonl"
    lines = [record("user0"), record("user1"), record("user2")]
    path.write_text(jsonl(*lines).replace("\n", "\r\n"), encoding="utf-8")
    result = cli("accounts", "import", str(path), "--json", input="ignored: not read\n")
    assert result.exit_code == 0, result.stderr
    assert result.json() == {"created": 3, "updated": 0, "unchanged": 0}
    assert [a.open_id for a in repository.list_accounts()] == ["user0", "user1", "user2"]
    assert stored_tokens(engine, fernet_key, "user2") == tuple(tokens_in(lines[2]))


def test_quiet_import_prints_nothing(cli: Cli, repository: Repository) -> None:
    result = cli("accounts", "import", "--quiet", input=jsonl(record("user0")))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert [a.open_id for a in repository.list_accounts()] == ["user0"]


@pytest.mark.parametrize("text_in", ["", "\n", "\n  \n\t\n"], ids=["nothing", "newline", "blank"])
def test_empty_input_imports_nothing(cli: Cli, engine: Engine, text_in: str) -> None:
    before = snapshot(engine)
    result = cli("accounts", "import", input=text_in)
    assert result.exit_code == 0, result.stderr  # nothing to do is not a failure
    assert result.stdout == "Nothing imported: the input has no account lines.\n"
    assert result.stderr == ""
    as_json = cli("accounts", "import", "--json", input=text_in)
    assert as_json.exit_code == 0, as_json.stderr
    assert as_json.json() == {"created": 0, "updated": 0, "unchanged": 0}
    assert snapshot(engine) == before


# ----------------------------------------------------------------------------- expiries


def test_absolute_expiries_are_stored_exactly(cli: Cli, repository: Repository) -> None:
    line = record(
        expires_in=None,
        refresh_expires_in=None,
        access_expires_at="2030-01-02T03:04:05.123456+02:00",
        refresh_expires_at="2031-06-30T23:59:59Z",
    )
    import_ok(cli, line)
    account = view(repository, "user0")
    assert account.access_expires_at == datetime(2030, 1, 2, 1, 4, 5, 123456, tzinfo=UTC)
    assert account.refresh_expires_at == datetime(2031, 6, 30, 23, 59, 59, tzinfo=UTC)

    listed = cli("accounts", "list", "--json")
    assert listed.exit_code == 0, listed.stderr
    (shown,) = listed.json()["accounts"]
    assert shown["access_expires_at"] == "2030-01-02T01:04:05Z"
    assert shown["refresh_expires_at"] == "2031-06-30T23:59:59Z"


def test_issued_at_plus_expires_in(cli: Cli, repository: Repository) -> None:
    issued_at = (utcnow() - timedelta(hours=1)).replace(microsecond=0)
    line = record(
        issued_at=issued_at.isoformat().replace("+00:00", "Z"),
        expires_in=7200,
        refresh_expires_in=86_400 * 180,
    )
    import_ok(cli, line)
    account = view(repository, "user0")
    assert account.access_expires_at == issued_at + timedelta(seconds=7200)
    assert account.refresh_expires_at == issued_at + timedelta(days=180)


def test_issued_at_with_an_offset_and_mixed_expiry_forms(cli: Cli, repository: Repository) -> None:
    issued_utc = (utcnow() - timedelta(minutes=30)).replace(microsecond=0)
    issued_local = issued_utc.astimezone(timezone(timedelta(hours=5, minutes=30)))
    line = record(
        issued_at=issued_local.isoformat(),
        expires_in=3600,
        refresh_expires_in=None,
        refresh_expires_at="2030-05-01T00:00:00+00:00",
    )
    import_ok(cli, line)
    account = view(repository, "user0")
    assert account.access_expires_at == issued_utc + timedelta(hours=1)
    assert account.refresh_expires_at == datetime(2030, 5, 1, tzinfo=UTC)


def test_expires_in_counts_from_the_import_without_issued_at(
    cli: Cli, repository: Repository
) -> None:
    before = utcnow()
    import_ok(cli, record(expires_in=7200, refresh_expires_in=86_400))
    after = utcnow()
    account = view(repository, "user0")
    assert before + timedelta(seconds=7200) <= account.access_expires_at
    assert account.access_expires_at <= after + timedelta(seconds=7200)
    assert before + timedelta(days=1) <= account.refresh_expires_at
    assert account.refresh_expires_at <= after + timedelta(days=1)


def test_optional_fields(cli: Cli, repository: Repository) -> None:
    bare = record("bare", scope=None, token_type=None)
    full = record("full", label="  Brand account  ", scope="user.info.basic", token_type="bearer")
    import_ok(cli, bare, full)
    assert view(repository, "bare").label is None
    assert view(repository, "bare").scope == ""
    assert view(repository, "full").label == "Brand account"
    assert view(repository, "full").scope == "user.info.basic"


# ----------------------------------------------------------------------------- bad input

FUTURE = (datetime.now(UTC) + timedelta(days=1)).isoformat()

BAD_LINES: list[tuple[str, dict[str, Any] | str, str]] = [
    (
        "invalid-json",
        '{"open_id": "user9", "access_token": "act.leak-1" "refresh_token": "rft.leak-2"}',
        "line 3: not valid JSON (Expecting ',' delimiter at column 51)",
    ),
    ("array", '["act.leak-1", "rft.leak-2"]', "line 3: not a JSON object"),
    (
        "duplicate-open-id",
        jsonl(record("user9"))[:-1].replace('"open_id": "user9"', '"open_id": "a", "open_id": "b"'),
        "line 3: field 'open_id' appears twice",
    ),
    (
        "duplicate-token-same-value",
        jsonl(record("user9"))[:-1].replace(
            '"refresh_token": "rft.refresh-user9-Yp7vS2"',
            '"refresh_token": "rft.leak-2", "refresh_token": "rft.leak-2"',
        ),
        "line 3: field 'refresh_token' appears twice",
    ),
    (
        "duplicate-inside-a-value",
        jsonl(record("user9"))[:-1].replace('"scope": ', '"label": {"x": 1, "x": 2}, "scope": '),
        "line 3: field 'x' appears twice",
    ),
    ("string", '"act.leak-1"', "line 3: not a JSON object"),
    (
        "missing-field",
        record("user9", refresh_token=None),
        "line 3: field 'refresh_token' is missing",
    ),
    ("missing-open-id", record(open_id=None), "line 3: field 'open_id' is missing"),
    (
        "wrong-type-token",
        record("user9", access_token=12345),
        "line 3: field 'access_token' must be a non-empty string",
    ),
    (
        "empty-token",
        record("user9", refresh_token="  "),
        "line 3: field 'refresh_token' must be a non-empty string",
    ),
    (
        "token-with-space",
        record("user9", access_token="act.leak 1"),
        "line 3: field 'access_token' contains white space",
    ),
    (
        "wrong-type-open-id",
        record(open_id=42),
        "line 3: field 'open_id' must be a non-empty string",
    ),
    (
        "wrong-type-expires-in",
        record("user9", expires_in="7200"),
        "line 3: field 'expires_in' must be a positive whole number of seconds",
    ),
    (
        "float-expires-in",
        record("user9", expires_in=7200.5),
        "line 3: field 'expires_in' must be a positive whole number of seconds",
    ),
    (
        "bool-expires-in",
        record("user9", expires_in=True),
        "line 3: field 'expires_in' must be a positive whole number of seconds",
    ),
    (
        "negative-expires-in",
        record("user9", expires_in=-60),
        "line 3: field 'expires_in' must be a positive whole number of seconds",
    ),
    (
        "zero-refresh-expires-in",
        record("user9", refresh_expires_in=0),
        "line 3: field 'refresh_expires_in' must be a positive whole number of seconds",
    ),
    (
        "both-access-expiries",
        record("user9", access_expires_at="2030-01-01T00:00:00Z"),
        "line 3: give either 'expires_in' or 'access_expires_at', not both",
    ),
    (
        "both-refresh-expiries",
        record("user9", refresh_expires_at="2030-01-01T00:00:00Z"),
        "line 3: give either 'refresh_expires_in' or 'refresh_expires_at', not both",
    ),
    (
        "no-access-expiry",
        record("user9", expires_in=None),
        "line 3: field 'expires_in' (or 'access_expires_at') is missing",
    ),
    (
        "naive-timestamp",
        record("user9", expires_in=None, access_expires_at="2030-01-01T00:00:00"),
        "line 3: field 'access_expires_at' needs a time zone (e.g. Z or +00:00)",
    ),
    (
        "naive-issued-at",
        record("user9", issued_at="2026-01-01T00:00:00"),
        "line 3: field 'issued_at' needs a time zone (e.g. Z or +00:00)",
    ),
    (
        "not-a-timestamp",
        record("user9", refresh_expires_in=None, refresh_expires_at="next year"),
        "line 3: field 'refresh_expires_at' is not an ISO 8601 timestamp "
        "(e.g. 2026-01-31T12:00:00Z)",
    ),
    (
        "timestamp-not-a-string",
        record("user9", expires_in=None, access_expires_at=1893456000),
        "line 3: field 'access_expires_at' must be an ISO 8601 timestamp string",
    ),
    (
        "unknown-field",
        record("user9", refresh_token_expires_in=86400),
        "line 3: unknown field 'refresh_token_expires_in'",
    ),
    (
        "issued-at-in-the-future",
        record("user9", issued_at=FUTURE),
        "line 3: field 'issued_at' is in the future",
    ),
    (
        "open-id-too-long",
        record("x" * 256),
        "line 3: field 'open_id' is longer than 255 characters",
    ),
]


@pytest.mark.parametrize(
    ("bad", "expected"),
    [pytest.param(bad, expected, id=name) for name, bad, expected in BAD_LINES],
)
def test_a_bad_line_imports_nothing(
    cli: Cli,
    engine: Engine,
    fernet_key: str,
    bad: dict[str, Any] | str,
    expected: str,
) -> None:
    existing = record("existing")
    import_ok(cli, existing)
    before = snapshot(engine)

    good_new = record("user-new")
    good_update = record("existing", access_token="act.replaced-A1", refresh_token="rft.rep-B2")
    result = cli("accounts", "import", input=jsonl(good_new, "", bad, good_update))

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"{ERROR_HEAD}  {expected}\n"
    assert snapshot(engine) == before
    output = result.stdout + result.stderr
    secrets = [*tokens_in(good_new, good_update, existing), "act.leak", "rft.leak", fernet_key]
    if isinstance(bad, dict):
        secrets += tokens_in(bad)
    for secret in secrets:
        assert secret not in output


def test_a_duplicate_open_id_imports_nothing(cli: Cli, engine: Engine) -> None:
    before = snapshot(engine)
    first = record("user0")
    again = record("user0", access_token="act.second-copy", refresh_token="rft.second-copy")
    result = cli("accounts", "import", input=jsonl(first, record("user1"), again))
    assert result.exit_code == 2
    assert result.stderr == f"{ERROR_HEAD}  line 3: open_id is the same as on line 1\n"
    assert snapshot(engine) == before
    for token in tokens_in(first, again):
        assert token not in result.stderr


def test_a_duplicate_open_id_after_trimming_is_a_duplicate(cli: Cli, engine: Engine) -> None:
    before = snapshot(engine)
    again = record("  user0 ", access_token="act.2", refresh_token="rft.2")
    result = cli("accounts", "import", input=jsonl(record("user0"), again))
    assert result.exit_code == 2
    assert result.stderr == f"{ERROR_HEAD}  line 2: open_id is the same as on line 1\n"
    assert snapshot(engine) == before


def test_every_bad_line_is_listed_up_to_twenty(cli: Cli, engine: Engine) -> None:
    before = snapshot(engine)
    lines: list[dict[str, Any] | str] = [record("good")]
    lines += [record(f"user{n}", expires_in=-1) for n in range(25)]
    result = cli("accounts", "import", input=jsonl(*lines))
    assert result.exit_code == 2
    expected = "".join(
        f"  line {n}: field 'expires_in' must be a positive whole number of seconds\n"
        for n in range(2, 22)
    )
    assert result.stderr == f"{ERROR_HEAD}{expected}  ... and 5 more\n"
    assert snapshot(engine) == before


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"expires_in": 10**15}, "expires_in"),
        ({"refresh_expires_in": 3 * 10**11}, "refresh_expires_in"),
        (
            {"expires_in": None, "access_expires_at": "9999-12-31T23:59:59-01:00"},
            "access_expires_at",
        ),
    ],
    ids=["expires-in-overflows-timedelta", "expiry-past-year-9999", "timestamp-past-year-9999"],
)
def test_an_out_of_range_expiry_is_a_line_error(
    cli: Cli, engine: Engine, fields: dict[str, Any], field: str
) -> None:
    """Absurd but well-typed values: a clear error naming line and field, not a traceback."""
    before = snapshot(engine)
    result = cli("accounts", "import", input=jsonl(record("user0"), record("user1", **fields)))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{ERROR_HEAD}  line 2: field '{field}'")
    assert snapshot(engine) == before


def test_deeply_nested_json_is_a_line_error(cli: Cli, engine: Engine) -> None:
    before = snapshot(engine)
    result = cli("accounts", "import", input=jsonl(record("user0"), "[" * 100_000))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{ERROR_HEAD}  line 2: not valid JSON")
    assert snapshot(engine) == before


def test_a_missing_file_is_a_usage_error(cli: Cli, tmp_path: Path, engine: Engine) -> None:
    before = snapshot(engine)
    missing = tmp_path / "nope.jsonl"
    result = cli("accounts", "import", str(missing))
    assert result.exit_code == 2
    assert result.stderr == f"error: cannot read {missing}: No such file or directory\n"
    assert snapshot(engine) == before


def test_a_directory_is_a_usage_error(cli: Cli, tmp_path: Path, engine: Engine) -> None:
    before = snapshot(engine)
    result = cli("accounts", "import", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr == f"error: cannot read {tmp_path}: Is a directory\n"
    assert snapshot(engine) == before


def test_a_file_that_is_not_utf8_is_a_usage_error(cli: Cli, tmp_path: Path, engine: Engine) -> None:
    before = snapshot(engine)
    path = tmp_path / "accounts.jsonl"
    path.write_bytes(jsonl(record("user0")).encode("utf-16"))
    result = cli("accounts", "import", str(path))
    assert result.exit_code == 2
    assert result.stderr == f"error: {path} is not UTF-8 text\n"
    assert snapshot(engine) == before


def test_import_without_encryption_keys_exits_3(cli: Cli, engine: Engine) -> None:
    before = snapshot(engine)
    line = record("user0")
    result = cli(
        "accounts", "import", input=jsonl(line), env={"TOKENREFRESH_ENCRYPTION_KEYS": None}
    )
    assert result.exit_code == 3
    assert result.stderr.startswith("error: TOKENREFRESH_ENCRYPTION_KEYS is not set:")
    assert snapshot(engine) == before
    for token in tokens_in(line):
        assert token not in result.stdout + result.stderr


# ----------------------------------------------------------------------------- re-import


def generation(engine: Engine, open_id: str) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                text("SELECT token_generation FROM accounts WHERE open_id = :o"), {"o": open_id}
            ).scalar_one()
        )


def test_reimport_replaces_tokens_and_reactivates_an_expired_account(
    cli: Cli, engine: Engine, repository: Repository, fernet_key: str
) -> None:
    import_ok(cli, record("user0", label="Shop A"), record("user1"))
    original = view(repository, "user0")
    set_account(
        engine,
        "user0",
        status=AccountStatus.EXPIRED.value,
        last_error="TikTok rejected the refresh token: invalid_grant",
        consecutive_failures=3,
    )
    user1_before = view(repository, "user1")

    fresh = record(
        "user0",
        access_token="act.fresh-after-reconnect",
        refresh_token="rft.fresh-after-reconnect",
        expires_in=None,
        refresh_expires_in=None,
        access_expires_at="2031-01-01T00:00:00Z",
        refresh_expires_at="2031-07-01T00:00:00Z",
        scope="user.info.basic",
    )
    result = cli("accounts", "import", input=jsonl(fresh))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Imported 1 account(s): 0 new, 1 updated.\n"

    account = view(repository, "user0")
    assert account.id == original.id
    assert account.status == "active"
    assert account.label == "Shop A"  # not given: kept
    assert account.scope == "user.info.basic"
    assert account.last_error is None
    assert account.consecutive_failures == 0
    assert account.access_expires_at == datetime(2031, 1, 1, tzinfo=UTC)
    assert account.refresh_expires_at == datetime(2031, 7, 1, tzinfo=UTC)
    assert account.created_at == original.created_at
    assert generation(engine, "user0") == 2
    assert stored_tokens(engine, fernet_key, "user0") == (
        "act.fresh-after-reconnect",
        "rft.fresh-after-reconnect",
    )
    token = cli("accounts", "token", "--open-id", "user0")
    assert token.exit_code == 0, token.stderr
    assert token.stdout == "act.fresh-after-reconnect\n"
    assert view(repository, "user1") == user1_before
    assert len(repository.list_accounts()) == 2


def test_reimport_keeps_a_disabled_account_disabled(
    cli: Cli, engine: Engine, repository: Repository, fernet_key: str
) -> None:
    import_ok(cli, record("user0"))
    account_id = view(repository, "user0").id
    disabled = cli("accounts", "disable", str(account_id))
    assert disabled.exit_code == 0, disabled.stderr

    fresh = record("user0", access_token="act.new-A", refresh_token="rft.new-B")
    result = cli("accounts", "import", input=jsonl(fresh, record("user1")))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Imported 2 account(s): 1 new, 1 updated.\n"
    assert view(repository, "user0").status == "disabled"
    assert stored_tokens(engine, fernet_key, "user0") == ("act.new-A", "rft.new-B")
    assert view(repository, "user1").status == "active"


def test_reimport_with_a_label_replaces_it(cli: Cli, repository: Repository) -> None:
    import_ok(cli, record("user0", label="Old name"))
    import_ok(cli, record("user0", label="New name"))
    assert view(repository, "user0").label == "New name"
    assert len(repository.list_accounts()) == 1
