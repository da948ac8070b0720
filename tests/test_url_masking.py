"""Database URLs: the password masked wherever it sits, URLs that would go wrong refused
before anything connects or creates a file, and driver errors shown without a fragment of
the password or a control character.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from conftest import Cli, PostgresServer
from tokenrefresh.base.scrub import register_secret
from tokenrefresh.base.settings import Settings, database_url_secrets
from tokenrefresh.errors import ConfigError
from tokenrefresh.storage.engine import (
    create_database_engine,
    describe_db_error,
    describe_url,
    resolve_database_url,
    sqlite_path,
)

CONTROL_OR_BIDI = {chr(code) for code in [*range(0x20), *range(0x7F, 0xA0)]} - {"\n"} | set(
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029"
)
UNENCODED_AT = (
    "TOKENREFRESH_DATABASE_URL: the user name or password holds an unencoded @: "
    "percent-encode it as %40 (e.g. postgresql://user:p%40ss@host/dbname)"
)
RELATIVE_SQLITE = (
    "TOKENREFRESH_DATABASE_URL: the SQLite path must be absolute, "
    "sqlite:////abs/path.db (four slashes): a relative one would put the database "
    "wherever the command runs (under cron, $HOME)"
)


def resolved(value: str) -> URL:
    return resolve_database_url(Settings.from_env({"TOKENREFRESH_DATABASE_URL": value}))


def refusal(value: str) -> str:
    with pytest.raises(ConfigError) as caught:
        resolved(value)
    assert caught.value.exit_code == 3
    return caught.value.message


def assert_no_fragment(text: str, secret: str, size: int = 5) -> None:
    """Not even `size` characters of the secret in a row (raw or percent-encoded)."""
    for form in {secret, quote(secret, safe="")}:
        for start in range(len(form) - size + 1):
            assert form[start : start + size] not in text, (form[start : start + size], text)


def assert_terminal_safe(text: str) -> None:
    assert not set(text) & CONTROL_OR_BIDI, repr(text)


# ----------------------------------------------------------------------------- describe_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql+psycopg://app:hunter2-secret@db:5432/tokens",
            "postgresql+psycopg://app:***@db:5432/tokens",
        ),
        (
            "postgresql+psycopg://app@db/tokens?password=hunter2-secret",
            "postgresql+psycopg://app@db/tokens?password=***",
        ),
        (
            "postgresql+psycopg://app@db/tokens?sslmode=require&sslpassword=hunter2-secret",
            "postgresql+psycopg://app@db/tokens?sslmode=require&sslpassword=***",
        ),
        (
            "postgresql+psycopg://app@db/tokens?PassWord=hunter2-secret&SSLPASSWORD=key-pass",
            "postgresql+psycopg://app@db/tokens?PassWord=***&SSLPASSWORD=***",
        ),
        (
            "postgresql+psycopg://app:x@db/tokens?password=a%26b%3Dc&sslmode=require",
            "postgresql+psycopg://app:***@db/tokens?password=***&sslmode=require",
        ),
        (
            "postgresql+psycopg://app:p%40ss%2Fw%3Ar%25d@db/tokens",
            "postgresql+psycopg://app:***@db/tokens",
        ),
        ("postgresql+psycopg://app:pa/ss?w#rd@db/tokens", "postgresql+psycopg://app:***@db/tokens"),
        (
            "postgresql+psycopg://app@db/tokens?application_name=password%3Dnot-a-key",
            "postgresql+psycopg://app@db/tokens?application_name=password%3Dnot-a-key",
        ),
    ],
    ids=[
        "userinfo",
        "query-password",
        "query-sslpassword",
        "any-case",
        "encoded-query-value",
        "encoded-userinfo",
        "special-characters",
        "no-password",
    ],
)
def test_describe_url_masks_the_password_wherever_it_sits(url: str, expected: str) -> None:
    shown = describe_url(make_url(url))
    assert shown == expected
    for password in database_url_secrets(url):
        if len(password) > 1:
            assert password not in shown.replace("password=", "")


def test_describe_url_escapes_control_characters() -> None:
    url = make_url("postgresql+psycopg://app@db\u202e/tok\x1b[2Jens\x9b")
    shown = describe_url(url)
    # SQLAlchemy percent-encodes the database name; the host is escaped like any text.
    assert shown == "postgresql+psycopg://app@db\\u202e/tok%1B%5B2Jens%C2%9B"
    assert_terminal_safe(shown)


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("value", "parts"),
    [
        ("postgresql://app:p@ss@db/tokens", ["p@ss", "ss@db"]),
        ("postgresql://app:p@ss@w0rd-9@db:5432/tokens?sslmode=require", ["w0rd-9", "p@ss"]),
        ("postgres://us@er:pw@db/tokens", ["us@er"]),
        ("postgresql://app:p@ss@db", ["p@ss"]),
    ],
    ids=["password", "two-at-signs", "user-name", "no-path"],
)
def test_an_unencoded_at_in_the_user_info_is_refused_without_echo(
    value: str, parts: list[str]
) -> None:
    message = refusal(value)
    assert message == UNENCODED_AT
    for part in parts:
        assert part not in message


@pytest.mark.parametrize(
    ("value", "password"),
    [
        ("postgresql://app:p%40ss@db/tokens", "p@ss"),
        ("postgresql://app@db/tokens?sslrootcert=/etc/a@b/ca.pem", None),
        ("postgresql://app:pa/ss@db/t@x", "pa/ss"),
    ],
    ids=["encoded", "at-in-query", "at-in-database"],
)
def test_an_at_outside_the_user_info_or_encoded_is_fine(value: str, password: str | None) -> None:
    assert resolved(value).password == password


@pytest.mark.parametrize(
    "value",
    ["sqlite:///relative.db", "sqlite:///./x.db", "sqlite:///data/t.db", "sqlite:///../t.db"],
)
def test_a_relative_sqlite_path_is_refused(value: str) -> None:
    assert refusal(value) == RELATIVE_SQLITE


def test_an_absolute_or_home_sqlite_path_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert sqlite_path(resolved("sqlite:///~/x.db")) == tmp_path / "x.db"
    assert sqlite_path(resolved(f"sqlite:///{tmp_path}/t.db")) == tmp_path / "t.db"
    assert sqlite_path(resolved("sqlite:////var/lib/t@x/t.db")) == Path("/var/lib/t@x/t.db")


# ----------------------------------------------------------------------------- driver errors


def driver_error(message: str) -> DBAPIError:
    """A SQLAlchemy error around a psycopg error carrying this message."""
    return OperationalError("SELECT 1", None, psycopg.OperationalError(message))


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "failed to resolve host 'ss@127.0.0.1': [Errno -2] Name or service not known",
            "OperationalError: failed to resolve host '***@127.0.0.1': [Errno -2] Name or "
            "service not known",
        ),
        (
            'could not translate host name "w@rd@db.internal" to address',
            'OperationalError: could not translate host name "***@db.internal" to address',
        ),
        (
            'invalid dsn: missing "=" after "password=pw host" in connection info string',
            'OperationalError: invalid dsn: missing "=" after "password=*** host" in connection '
            "info string",
        ),
        (
            "invalid dsn: bad sslpassword='s3 cr3t' given",
            "OperationalError: invalid dsn: bad sslpassword=*** given",
        ),
        (
            "invalid URI: postgresql://app:pw@db/x?PASSWORD=pw2",
            "OperationalError: invalid URI: postgresql://app:***@db/x?PASSWORD=***",
        ),
        (
            'password authentication failed for user "app@tenant"',
            'OperationalError: password authentication failed for user "app@tenant"',
        ),
    ],
    ids=["resolve-host", "translate-host", "dsn", "quoted-dsn", "uri", "user-name-kept"],
)
def test_a_password_the_driver_repeats_is_masked(message: str, expected: str) -> None:
    assert describe_db_error(driver_error(message)) == expected


def test_a_driver_error_is_one_safe_bounded_line_without_registered_secrets() -> None:
    secret = "registered-password-for-describe-db-error"
    register_secret(secret)
    error = driver_error(
        f"FATAL: \x1b[2Jnope\x9b31m {secret.upper()} \u202eevil {'x' * 2000}\nDETAIL: second"
    )
    shown = describe_db_error(error)
    assert shown.startswith("OperationalError: FATAL: \\x1b[2Jnope\\x9b31m [redacted] \\u202eevil")
    assert len(shown) == 500
    assert shown.endswith("x…")
    assert "second" not in shown
    assert_terminal_safe(shown)


@pytest.mark.postgres
def test_a_real_driver_error_that_repeats_part_of_a_password_is_masked(
    postgres_server: PostgresServer,
) -> None:
    """psycopg says which host it could not resolve: with an unencoded @, part of the
    password. resolve_database_url refuses such a URL; the error is masked anyway."""
    password = "my-pa@ssword-is-long-enough"
    text = f"postgresql://postgres:{password}@127.0.0.1:5432/postgres"
    Settings.from_env({"TOKENREFRESH_DATABASE_URL": text})  # registers the password
    engine = create_database_engine(make_url(text).set(drivername="postgresql+psycopg"))
    with pytest.raises(DBAPIError) as caught:
        engine.connect()
    engine.dispose()
    assert "ssword-is-long-enough@127.0.0.1" in str(caught.value.orig)  # what psycopg says
    shown = describe_db_error(caught.value)
    assert shown.startswith("OperationalError: failed to resolve host '***@127.0.0.1'")
    assert_no_fragment(shown, password)


# ----------------------------------------------------------------------------- on the CLI


def wrong_database(server: PostgresServer, **parts: str) -> str:
    """A URL of the test server with a database that does not exist."""
    url = server.admin_url.set(database="tokenrefresh_no_such_db", **parts)  # type: ignore[arg-type]
    return url.render_as_string(hide_password=False)


PASSWORD = "Long-Secret_pa%ss:w/rd?#&=42"  # every character a URL treats specially


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("where", ["userinfo", "password", "sslpassword"])
def test_a_failed_connection_exits_3_without_a_fragment_of_the_password(
    cli: Cli, postgres_server: PostgresServer, where: str
) -> None:
    if where == "userinfo":
        url = wrong_database(postgres_server, password=PASSWORD)
        shown_url = "postgresql+psycopg://postgres:***@127.0.0.1:5432/tokenrefresh_no_such_db"
    else:
        url = f"{wrong_database(postgres_server)}?{where}={quote(PASSWORD)}&sslmode=disable"
        query = sorted([f"{where}=***", "sslmode=disable"])  # SQLAlchemy sorts the query
        shown_url = (
            "postgresql+psycopg://postgres@127.0.0.1:5432/tokenrefresh_no_such_db?"
            + "&".join(query)
        )
    result = cli("status", env={"TOKENREFRESH_DATABASE_URL": url})
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: cannot use the database {shown_url}: ")
    assert 'database "tokenrefresh_no_such_db" does not exist' in result.stderr
    assert_no_fragment(result.stderr, PASSWORD)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_unknown_host_exits_3_without_a_fragment_of_the_password(cli: Cli) -> None:
    url = f"postgresql://app:{quote(PASSWORD, safe='')}@no-such-host.invalid/tokens"
    result = cli("status", env={"TOKENREFRESH_DATABASE_URL": url})
    assert result.exit_code == 3
    assert result.stderr.startswith(
        "error: cannot use the database postgresql+psycopg://app:***@no-such-host.invalid/tokens: "
        "OperationalError: "
    )
    assert_no_fragment(result.stderr, PASSWORD)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_control_character_in_a_driver_error_is_escaped(
    cli: Cli, postgres_server: PostgresServer
) -> None:
    url = postgres_server.admin_url.set(database="no\x1b[2Jsuch\u202edb")
    result = cli("status", env={"TOKENREFRESH_DATABASE_URL": url.render_as_string()})
    assert result.exit_code == 3
    assert 'database "no\\x1b[2Jsuch\\u202edb" does not exist' in result.stderr
    assert_terminal_safe(result.stdout + result.stderr)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_unencoded_at_is_refused_on_the_cli(cli: Cli) -> None:
    result = cli(
        "status", env={"TOKENREFRESH_DATABASE_URL": "postgresql://app:p@ss-w0rd@127.0.0.1:1/x"}
    )
    assert result.exit_code == 3
    assert result.stderr == f"error: {UNENCODED_AT}\n"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("value", ["sqlite:///relative.db", "sqlite:///./x.db"])
def test_a_relative_sqlite_path_is_refused_on_the_cli_and_creates_nothing(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    before = sorted(tmp_path.rglob("*"))
    for command in (["status"], ["accounts", "list"], ["db", "upgrade"]):
        result = cli(*command, env={"TOKENREFRESH_DATABASE_URL": value})
        assert result.exit_code == 3, command
        assert result.stderr == f"error: {RELATIVE_SQLITE}\n"
    assert sorted(tmp_path.rglob("*")) == before
    assert list(workdir.iterdir()) == []
