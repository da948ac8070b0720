"""How each connection is set up. PostgreSQL: the libpq options every connection gets,
unless the URL says otherwise, read from what the driver would be called with (the
`do_connect` event), so the test opens no connection. SQLite: the switch to WAL."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url

from tokenrefresh.storage.engine import create_database_engine


class Captured(Exception):
    pass


def connect_parameters(url: str) -> dict[str, Any]:
    engine = create_database_engine(make_url(url))
    captured: dict[str, Any] = {}

    @event.listens_for(engine, "do_connect")
    def capture(_dialect: Any, _record: Any, _args: Any, parameters: dict[str, Any]) -> None:
        captured.update(parameters)
        raise Captured

    with pytest.raises(Captured):
        engine.connect()
    engine.dispose()
    return captured


def test_gssapi_encryption_is_off_unless_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGGSSENCMODE", raising=False)
    parameters = connect_parameters("postgresql://app@db.invalid/tokens")
    assert parameters["gssencmode"] == "disable"
    assert parameters["application_name"] == "tokenrefresh"
    assert parameters["keepalives_idle"] == 30


def test_the_url_or_pggssencmode_turns_gssapi_encryption_back_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PGGSSENCMODE", raising=False)
    asked = connect_parameters("postgresql://app@db.invalid/tokens?gssencmode=require")
    assert asked["gssencmode"] == "require"
    monkeypatch.setenv("PGGSSENCMODE", "prefer")
    assert "gssencmode" not in connect_parameters("postgresql://app@db.invalid/tokens")


def test_a_new_sqlite_file_waits_for_the_write_lock_to_switch_to_wal(tmp_path: Path) -> None:
    """While another connection holds the write lock of a file not yet in WAL mode, SQLite
    answers the switch at once with "database is locked", without its busy handler: two of
    four `db upgrade --create` started together on a new file failed so in CI. The switch
    waits as long as the busy timeout would."""
    path = tmp_path / "tokens.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # the write lock of a new file, in rollback mode
    release = threading.Timer(0.3, holder.execute, ["COMMIT"])
    release.start()
    engine = create_database_engine(make_url(f"sqlite:///{path}"), create=False)
    try:
        with engine.connect() as connection:
            mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
        assert mode == "wal"
        assert holder.execute("PRAGMA journal_mode").fetchone() == ("wal",)  # the file's
    finally:
        release.join()
        engine.dispose()
        holder.close()


def test_a_sqlite_error_other_than_busy_in_the_switch_to_wal_is_not_waited_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tokens.db"
    path.write_bytes(b"not a database, but a file of sixteen and more bytes")
    engine = create_database_engine(make_url(f"sqlite:///{path}"), create=False)
    try:
        with pytest.raises(Exception, match="file is not a database"):
            engine.connect()
    finally:
        engine.dispose()
