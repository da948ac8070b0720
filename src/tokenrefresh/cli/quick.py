"""The quick path of `tokenrefresh accounts token`: a fresh token for a shell script
without importing Typer or SQLAlchemy, which cost more than the whole answer.

It answers only when it is sure to print what the Typer command would print: the plain
forms of the command's options, a SQLite database as it is (at the current revision, with
its key check value), an active account whose stored token is good for --min-valid and
grants every --scope. Anything else, from `--help` to an account that needs a refresh to
a PostgreSQL URL, returns False before anything was written, and `cli.main` runs the
Typer command, which refreshes, migrates or says what is wrong. So the quick path changes
no behaviour and no exit code; `tests/test_quick_token.py` holds it to that.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["answered"]

_OPTIONS = ("--open-id", "--min-valid", "--scope", "--http-timeout")
_NUMBER = re.compile(r"[0-9]+")  # as `options.account_key` reads an id
# `sqlite:////abs/path.db` in its plain form; anything else is read by the full path.
_PLAIN_SQLITE_URL = re.compile(r"sqlite(?:\+pysqlite)?:///(/[^?#%@~]*)")


@dataclass
class _Request:
    account: str | None = None
    values: dict[str, list[str]] = field(default_factory=dict)


def answered(argv: list[str]) -> bool:
    """Print the account's token and return True if the quick path is sure of it; False
    (nothing printed, nothing changed) for the Typer command to answer instead."""
    if argv[:2] != ["accounts", "token"]:
        return False
    request = _parse(argv[2:])
    if request is None:
        return False
    try:
        token = _fresh_token(request)
    except Exception:  # whatever it is, the full path meets it too and says it properly
        return False
    if token is None:
        return False
    try:
        sys.stdout.write(token + "\n")
    except UnicodeEncodeError:  # nothing was written: the full path reports it
        return False
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        from tokenrefresh.cli.pipe import closed_pipe

        sys.exit(closed_pipe())
    return True


def _parse(args: list[str]) -> _Request | None:
    """The arguments in the forms `accounts token` documents; None for any other (a
    repeated option, `--help`, `--`, a value that starts with `-`)."""
    request = _Request()
    position = 0
    while position < len(args):
        arg = args[position]
        name, equals, value = arg.partition("=")
        if name in _OPTIONS:
            if not equals:
                position += 1
                if position == len(args):
                    return None
                value = args[position]
            if value.startswith("-") or (name != "--scope" and name in request.values):
                return None
            request.values.setdefault(name, []).append(value)
        elif arg.startswith("-") or request.account is not None:
            return None
        else:
            request.account = arg
        position += 1
    if (request.account is None) == ("--open-id" not in request.values):
        return None
    return request


def _fresh_token(request: _Request) -> str | None:
    from tokenrefresh.adapters.crypto import TokenCipher
    from tokenrefresh.base import defaults
    from tokenrefresh.base.clock import utcnow
    from tokenrefresh.base.durations import parse_duration, parse_seconds
    from tokenrefresh.base.scopes import check_scopes
    from tokenrefresh.base.settings import Settings
    from tokenrefresh.services.refresh.fresh import stored_token_serves
    from tokenrefresh.storage.quickread import read_token_state

    [min_valid_text] = request.values.get("--min-valid", [None])
    min_valid = defaults.MIN_VALID if min_valid_text is None else parse_duration(min_valid_text)
    # Unused for a fresh token, but the command checks it (an empty variable is unset).
    [timeout_text] = request.values.get("--http-timeout", [None])
    if timeout_text is None:
        timeout_text = os.environ.get("TOKENREFRESH_HTTP_TIMEOUT") or None
    if timeout_text is not None:
        timeout = parse_seconds(timeout_text)
        if not defaults.MIN_HTTP_TIMEOUT <= timeout <= defaults.MAX_HTTP_TIMEOUT:
            return None
    wanted = frozenset(check_scopes(request.values.get("--scope", [])))
    with _warnings() as warned:
        settings = Settings.from_env()
    if warned:
        return None  # the full path shows the warning as logging is configured
    path = _sqlite_file(None if settings.database_url is None else settings.database_url.reveal())
    if path is None:
        return None
    [open_id] = request.values.get("--open-id", [None])
    account_id = None
    if request.account is not None and _NUMBER.fullmatch(request.account):
        account_id = int(request.account)
    elif request.account is not None:
        open_id = request.account
    if open_id is not None and _configuration_file():
        return None  # which app a user id belongs to is the configuration's to say
    snapshot = read_token_state(path, account_id=account_id, open_id=open_id)
    if snapshot is None:
        return None
    cipher = TokenCipher(settings.require_encryption_keys(), source=settings.encryption_keys_source)
    if cipher.key_position(snapshot.key_check) is None:
        return None
    state = snapshot.state
    if not stored_token_serves(state, utcnow(), min_valid, wanted):
        return None
    assert state.access_token_ciphertext is not None
    return cipher.decrypt(state.access_token_ciphertext)


def _configuration_file() -> bool:
    """Whether a configuration file may name the apps (`base/apps.py` reads it)."""
    if os.environ.get("TOKENREFRESH_CONFIG"):
        return True
    base = os.environ.get("XDG_CONFIG_HOME", "").strip()
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return (root / "tokenrefresh" / "config.toml").exists()


def _sqlite_file(url: str | None) -> Path | None:
    """The SQLite file the full path would open (`storage/engine.py`), if it exists."""
    if url is None:
        from tokenrefresh.storage.shape import default_database_path

        path = default_database_path()
    else:
        match = _PLAIN_SQLITE_URL.fullmatch(url)
        if match is None:
            return None
        path = Path(match[1]).resolve()
    return path if path.is_file() else None


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def _warnings() -> Iterator[list[logging.LogRecord]]:
    """The warnings `tokenrefresh` logs meanwhile (a secret file others can read), whatever
    its level was: the command would show them."""
    logger, recorder = logging.getLogger("tokenrefresh"), _Recorder()
    level, propagate = logger.level, logger.propagate
    logger.addHandler(recorder)
    logger.setLevel(logging.WARNING)
    logger.propagate = False  # recorded, not shown: the command shows them if it runs
    try:
        yield recorder.records
    finally:
        logger.removeHandler(recorder)
        logger.setLevel(level)
        logger.propagate = propagate
