"""Connections and transactions: the one place that opens them and translates driver errors.

Every query module builds on `Database`; services never see a connection, only the frozen
records that the queries return.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Executable, Row
from sqlalchemy.exc import DBAPIError

from tokenrefresh.base.clock import Clock, utcnow
from tokenrefresh.errors import DatabaseError
from tokenrefresh.storage.engine import describe_db_error

__all__ = ["Database", "chunks", "close_quietly", "translated"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Database:
    """An engine, the clock its writes are stamped with, and reads and transactions on it.

    `holds_row_locks`: PostgreSQL claims lock their rows (FOR UPDATE SKIP LOCKED); SQLite
    ignores FOR UPDATE, so there the run lock keeps runs apart.
    """

    def __init__(self, engine: Engine, clock: Clock = utcnow) -> None:
        self.engine = engine
        self.clock = clock
        self.holds_row_locks = engine.dialect.name == "postgresql"
        # PostgreSQL reads run in autocommit: no BEGIN and ROLLBACK around each, which
        # halves the time of an app's token read. Under READ COMMITTED each statement saw
        # its own snapshot anyway, so nothing that reads more than once sees less.
        self._reader = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if self.holds_row_locks
            else engine
        )

    def read(self, work: Callable[[Connection], T]) -> T:
        """`work` on a connection of its own, outside any explicit transaction (it must
        not write)."""
        with translated(), self._reader.connect() as connection:
            return work(connection)

    def rows(self, query: Executable) -> Sequence[Row[Any]]:
        return self.read(lambda connection: connection.execute(query).all())

    def row(self, query: Executable) -> Row[Any] | None:
        return self.read(lambda connection: connection.execute(query).one_or_none())

    def scalar(self, query: Executable) -> Any:
        return self.read(lambda connection: connection.execute(query).scalar_one_or_none())

    def single_write(self, work: Callable[[Connection], T]) -> T:
        """`work` that is one statement, atomic by itself (a claim, a release): PostgreSQL
        runs it in autocommit, one round trip instead of three; SQLite as a transaction."""
        if not self.holds_row_locks:
            return self.transaction(work)
        with translated(), self._reader.connect() as connection:
            return work(connection)

    def transaction(self, work: Callable[[Connection], T]) -> T:
        """`work` in one transaction, committed if it returns (BEGIN IMMEDIATE on SQLite)."""
        with translated(), self.engine.begin() as connection:
            return work(connection)


@contextmanager
def translated() -> Iterator[None]:
    """Database driver errors become DatabaseError, with a message safe to show."""
    try:
        yield
    except DBAPIError as error:
        raise DatabaseError(f"database error: {describe_db_error(error)}") from error


def close_quietly(connection: Connection) -> None:
    """Close a connection that may be broken; its transaction, if any, is rolled back."""
    try:
        connection.close()
    except DBAPIError as error:
        log.debug("closing a broken database connection: %s", describe_db_error(error))


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """`items` in slices of at most `size` (an IN list per query stays small)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
