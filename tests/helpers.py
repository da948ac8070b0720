"""Helpers the test modules share: reading rows back, decrypting what is stored, running the
CLI as a real process, and finding a fragment of a secret in output. Plain functions;
fixtures live in conftest.py."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import Engine, select, text, update
from sqlalchemy.engine import make_url

from conftest import Cli, CliResult, process_env
from standin import IssuedTokens
from tokenrefresh.adapters.crypto import TokenCipher
from tokenrefresh.base.settings import Secret
from tokenrefresh.storage.models import Account, Attempt, Base
from tokenrefresh.storage.records import AttemptRecord

AddAccounts = Callable[..., list[IssuedTokens]]
FRAGMENT = 12  # characters of a secret that must never appear together in output
HISTORY = ("accounts", "refresh_attempts", "runs")
# What an account that needs its user again says after "account ID (OPEN_ID) ", by reason.
RECONNECT_MESSAGES = {
    "expired": "is expired: TikTok rejected its refresh token (its user revoked access, or the "
    "token ran out: TikTok does not say which); its user must reconnect "
    "(`tokenrefresh accounts connect`, or `accounts import` of new tokens)",
    "disabled": "is disabled (`tokenrefresh accounts enable` makes it active again)",
    "revoked": "was revoked: its user must connect the TikTok account again",
    "no_refresh_token": "has no stored refresh token: its user must reconnect",
    "refresh_token_expired": "has a refresh token past its expiry: its user must reconnect",
}


# ----------------------------------------------------------------------------- rows


def account(engine: Engine, open_id: str) -> dict[str, Any]:
    """The account's row, every column (times as aware datetimes, as the models read them)."""
    with engine.connect() as connection:
        found = connection.execute(
            select(Account.__table__).where(Account.open_id == open_id)
        ).one_or_none()
    assert found is not None, open_id
    return dict(found._mapping)


def set_account(engine: Engine, open_id: str, **values: Any) -> None:
    """Change an account's row directly, as another process (or an old version) would."""
    with engine.begin() as connection:
        connection.execute(update(Account).where(Account.open_id == open_id).values(**values))


def table(engine: Engine, name: str) -> list[dict[str, Any]]:
    """Every row of a table, in primary-key order, typed by the models."""
    model = Base.metadata.tables[name]
    with engine.connect() as connection:
        result = connection.execute(select(model).order_by(*model.primary_key.columns))
        return [dict(row._mapping) for row in result]


def all_rows(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """accounts, attempts and runs, as dicts, in id order."""
    return {
        "accounts": table(engine, "accounts"),
        "attempts": table(engine, "refresh_attempts"),
        "runs": table(engine, "runs"),
    }


def snapshot(engine: Engine, tables: Iterable[str] = HISTORY) -> dict[str, list[tuple[Any, ...]]]:
    """The tables as tuples: to show that a command changed nothing."""
    with engine.connect() as connection:
        return {
            name: [
                tuple(row) for row in connection.execute(text(f"SELECT * FROM {name} ORDER BY 1"))
            ]
            for name in tables
        }


def assert_only_a_refused_run_was_recorded(
    engine: Engine, before: dict[str, list[tuple[object, ...]]], stderr: str
) -> None:
    """Nothing changed but one run, recorded as refused (exit 3) with the error, for status."""
    after = snapshot(engine)
    assert {k: v for k, v in after.items() if k != "runs"} == {
        k: v for k, v in before.items() if k != "runs"
    }
    [run] = [row for row in after["runs"] if row not in before["runs"]]
    assert run[7:11] == ("config_error", 3, "{}", stderr.removeprefix("error: ").rstrip("\n"))


def attempts(engine: Engine, account_id: int) -> list[dict[str, Any]]:
    """The account's refresh attempts, oldest first."""
    with engine.connect() as connection:
        result = connection.execute(
            select(Attempt.__table__).where(Attempt.account_id == account_id).order_by(Attempt.id)
        )
        return [dict(row._mapping) for row in result]


def runs(engine: Engine) -> list[dict[str, Any]]:
    """The runs, with their counts parsed."""
    rows = table(engine, "runs")
    for row in rows:
        row["counts"] = json.loads(row["counts"])
    return rows


def counts(
    refreshed: int = 0, expired: int = 0, failed: int = 0, skipped: int = 0, lost: int = 0
) -> dict[str, int]:
    """A refresh run's `counts`, every result named (JSON, the runs table, status)."""
    return {
        "refreshed": refreshed,
        "expired": expired,
        "failed": failed,
        "skipped": skipped,
        "lost": lost,
    }


def rejected_attempt(log_id: str | None = None) -> AttemptRecord:
    """The attempt record of a call TikTok answered with invalid_grant."""
    return AttemptRecord(
        attempted_at=datetime.now(UTC),
        outcome="expired",
        duration_ms=12,
        http_status=400,
        error_code="invalid_grant",
        log_id=log_id,
        message="invalid_grant (HTTP 400): Refresh token is invalid or expired.",
    )


# ----------------------------------------------------------------------------- tokens, keys


def new_key() -> str:
    return Fernet.generate_key().decode("ascii")


def stored_tokens(engine: Engine, open_id: str, fernet_key: str) -> tuple[str | None, str | None]:
    """(access token, refresh token) as stored for the account, decrypted."""
    row = account(engine, open_id)
    cipher = TokenCipher([Secret(fernet_key)])
    access, refresh = (
        cipher.decrypt(row[column]) if row[column] else None
        for column in ("access_token_ciphertext", "refresh_token_ciphertext")
    )
    return access, refresh


def import_line(tokens: IssuedTokens, **extra: Any) -> str:
    return json.dumps(tokens.as_import_line(**extra)) + "\n"


def sqlite_files(engine: Engine) -> dict[str, bytes]:
    """The SQLite database file and its WAL, byte for byte ({} on PostgreSQL); the engine's
    connections are closed first, and lock files counted only by name."""
    if engine.dialect.name != "sqlite":
        return {}
    engine.dispose()
    database = make_url(str(engine.url)).database
    assert database is not None
    path = Path(database)
    files = {
        candidate.name: candidate.read_bytes()
        for candidate in (path, path.with_name(path.name + "-wal"))
        if candidate.exists()
    }
    for lock in path.parent.glob("*.lock"):
        files[lock.name] = b"lock file"
    return files


# ----------------------------------------------------------------------------- processes


def run_ok(cli: Cli, *args: str, stdout: str) -> CliResult:
    """`tokenrefresh ARGS` exits 0 and prints exactly stdout."""
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == stdout
    return result


def assert_refused(result: CliResult, exit_code: int, stderr: str) -> None:
    """The command exited with exit_code, printed nothing on stdout and exactly stderr."""
    assert result.exit_code == exit_code
    assert result.stdout == ""
    assert result.stderr == stderr


def start(env: Mapping[str, str], *args: str) -> subprocess.Popen[str]:
    """`tokenrefresh ARGS` as a real process, in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "tokenrefresh", *args],
        env=process_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


# ----------------------------------------------------------------------------- loopback servers


@contextmanager
def serving(answer_post: Callable[[BaseHTTPRequestHandler], None]) -> Iterator[str]:
    """A quiet HTTP server on loopback whose POSTs answer_post handles, in threads; yields
    its base URL (http://127.0.0.1:PORT) and shuts it down after."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            answer_post(self)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# ----------------------------------------------------------------------------- secrets


def fragments(secret: str) -> set[str]:
    lowered = secret.lower()
    return {lowered[i : i + FRAGMENT] for i in range(len(lowered) - FRAGMENT + 1)}


def leaked(outputs: Iterable[str], secrets: Iterable[str]) -> list[str]:
    """Every place where FRAGMENT characters of a secret stand together, in any case."""
    forbidden: set[str] = set()
    for secret in secrets:
        forbidden |= fragments(secret)
    found = []
    for output in outputs:
        lowered = output.lower()
        for start_at in range(len(lowered) - FRAGMENT + 1):
            if lowered[start_at : start_at + FRAGMENT] in forbidden:
                found.append(output[max(0, start_at - 20) : start_at + FRAGMENT + 20])
    return found


def texts_of(*outputs: CliResult | str | None) -> list[str]:
    """The stdout and stderr of results, and plain texts, as one list."""
    texts: list[str] = []
    for output in outputs:
        if isinstance(output, CliResult):
            texts += [output.stdout, output.stderr]
        elif output is not None:
            texts.append(output)
    return texts


def assert_no_secret(outputs: CliResult | str | list[Any] | None, *secrets: str) -> None:
    """No secret, whole or as a fragment of FRAGMENT characters, in any of the outputs."""
    given = outputs if isinstance(outputs, list) else [outputs]
    texts = texts_of(*given)
    whole = [secret for secret in secrets if len(secret) < FRAGMENT]
    for shown in texts:
        for secret in whole:
            assert secret not in shown
    assert leaked(texts, [secret for secret in secrets if len(secret) >= FRAGMENT]) == []


# ----------------------------------------------------------------------------- a refusing database

REFUSE_TOKEN_WRITES = {
    "sqlite": [
        "CREATE TRIGGER refuse_tokens BEFORE UPDATE OF token_generation ON accounts "
        "WHEN NEW.token_generation <> OLD.token_generation "
        "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_tokens() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.token_generation <> OLD.token_generation "
        "THEN RAISE EXCEPTION 'could not extend file: No space left on device'; END IF; "
        "RETURN NEW; END $$",
        "CREATE TRIGGER refuse_tokens BEFORE UPDATE ON accounts FOR EACH ROW "
        "EXECUTE FUNCTION refuse_tokens()",
    ],
}
TAKE_TOKEN_WRITES = {
    "sqlite": ["DROP TRIGGER refuse_tokens"],
    "postgresql": ["DROP TRIGGER refuse_tokens ON accounts", "DROP FUNCTION refuse_tokens()"],
}


def refuse_token_writes(engine: Engine, refuse: bool = True) -> None:
    """A database that refuses every new token pair (as a full disk would), or takes them
    again: other writes of the row (a lease, a failure count) still go through."""
    statements = (REFUSE_TOKEN_WRITES if refuse else TAKE_TOKEN_WRITES)[engine.dialect.name]
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))


def import_lines(env: Mapping[str, str], lines: str) -> None:
    """`accounts import` of these JSON Lines, as a real process; it must succeed."""
    result = subprocess.run(
        [sys.executable, "-m", "tokenrefresh", "accounts", "import", "-q"],
        input=lines,
        env=process_env(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
