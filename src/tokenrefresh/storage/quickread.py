"""One account's token state read from a SQLite file with the standard library's sqlite3,
for the quick path of `tokenrefresh accounts token` (`cli/quick.py`): importing SQLAlchemy
costs more than the whole answer.

Read only, in one snapshot. None wherever the file is not what the full path would use
as it is (no file, another schema revision, a table or column missing, no key check
value, no such account): the caller then takes the full path, which migrates, writes the
first key check value, or says what is wrong.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, fields
from pathlib import Path
from urllib.parse import quote

from tokenrefresh.base import defaults
from tokenrefresh.storage.records import TokenState
from tokenrefresh.storage.shape import (
    COLUMNS_PRESENT,
    HEAD_REVISION,
    SCHEMA_COLUMNS,
    SQLITE_BUSY_TIMEOUT_MS,
    read_moment,
)

__all__ = ["Snapshot", "read_token_state"]

# TokenState's fields, as `accounts.py` selects them for the full path (names from the
# dataclass, never from input).
_FIELDS = fields(TokenState)
_STATE_QUERY = "SELECT {} FROM accounts WHERE ".format(  # noqa: S608
    ", ".join(
        "refresh_token_ciphertext IS NOT NULL AS has_refresh_token"
        if field.name == "has_refresh_token"
        else field.name
        for field in _FIELDS
    )
)
# The fields that hold a moment (stored as naive UTC text).
_MOMENTS = tuple(field.name for field in _FIELDS if str(field.type).startswith("datetime"))


@dataclass(frozen=True)
class Snapshot:
    """The stored key check value and the account's token state, read together."""

    key_check: str
    state: TokenState


def read_token_state(
    path: Path, *, account_id: int | None, open_id: str | None, app: str = defaults.APP
) -> Snapshot | None:
    """The account's token state in the SQLite file at `path` (which must exist: it is
    opened read-write only so that a WAL database can be read, never created)."""
    try:
        connection = sqlite3.connect(
            f"file:{quote(str(path))}?mode=rw",
            uri=True,
            timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
        )
    except sqlite3.Error:
        return None
    try:
        connection.execute("BEGIN")  # one snapshot for every read below
        return _read(connection, account_id, open_id, app)
    except sqlite3.Error:
        return None
    finally:
        connection.close()  # rolls the read transaction back


def _read(
    connection: sqlite3.Connection, account_id: int | None, open_id: str | None, app: str
) -> Snapshot | None:
    if connection.execute("SELECT version_num FROM alembic_version").fetchall() != [
        (HEAD_REVISION,)
    ]:
        return None
    if not set(connection.execute(COLUMNS_PRESENT["sqlite"]).fetchall()) >= SCHEMA_COLUMNS:
        return None
    key_check = connection.execute("SELECT ciphertext FROM key_check WHERE id = 1").fetchone()
    if key_check is None:
        return None
    if (account_id is None) == (open_id is None):
        raise TypeError("give exactly one of account_id and open_id")
    if open_id is None:
        cursor = connection.execute(_STATE_QUERY + "id = ?", (account_id,))
    else:
        cursor = connection.execute(_STATE_QUERY + "app = ? AND open_id = ?", (app, open_id))
    row = cursor.fetchone()
    if row is None:
        return None
    values = dict(zip((column[0] for column in cursor.description), row, strict=True))
    for name in _MOMENTS:
        values[name] = read_moment(values[name])  # as `models.UTCDateTime` reads them
    values["has_refresh_token"] = bool(values["has_refresh_token"])
    return Snapshot(key_check=key_check[0], state=TokenState(**values))
