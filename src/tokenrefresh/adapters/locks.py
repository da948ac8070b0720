"""RunLock: one run at a time, per lock name.

PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`) held on ONE dedicated
autocommit connection for the whole run. Taken through a pooled ORM session, the unlock
could run on another connection and silently do nothing. If the run dies, its connection
closes and PostgreSQL lets go of the lock. Session advisory locks need a direct connection:
PgBouncer in transaction mode hands each statement to any server connection.

SQLite: an OS file lock (flock, through filelock) on a file beside the database, released
by the kernel when the process ends, however it ends.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Self

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from tokenrefresh.errors import DatabaseError, LockHeld
from tokenrefresh.storage.engine import advisory_key, describe_db_error

__all__ = ["AdvisoryLock", "FileRunLock", "RunLock", "advisory_key"]

log = logging.getLogger("tokenrefresh.locks")  # the name logs have always shown


class RunLock:
    """One run at a time per name: `acquire` raises LockHeld if another run has it."""

    name: str

    def acquire(self) -> None:
        raise NotImplementedError

    def still_held(self) -> bool:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class AdvisoryLock(RunLock):
    """A PostgreSQL session advisory lock on a dedicated connection."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.name = name
        self.key = advisory_key(name)
        self._engine = engine
        self._connection: Connection | None = None

    def acquire(self) -> None:
        try:
            connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except DBAPIError as error:
            raise DatabaseError(
                f"cannot connect to the database: {describe_db_error(error)}"
            ) from error
        try:
            acquired = connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}
            ).scalar_one()
        except DBAPIError as error:
            connection.invalidate()
            connection.close()
            raise DatabaseError(f"cannot take the run lock: {describe_db_error(error)}") from error
        if not acquired:
            connection.close()
            raise LockHeld(f"another run holds the lock {self.name!r}; this run did nothing")
        self._connection = connection
        log.debug("took advisory lock %r (key %d)", self.name, self.key)

    def still_held(self) -> bool:
        """False once the lock's connection is gone (the server may have killed it)."""
        if self._connection is None:
            return False
        try:
            self._connection.execute(text("SELECT 1"))
        except SQLAlchemyError:
            return False
        return True

    def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if connection.invalidated:
            # A failed query already found the connection broken: the lock went with it.
            log.warning(
                "the connection that held the run lock %r was lost; "
                "PostgreSQL released the lock with it",
                self.name,
            )
            connection.close()
            return
        try:
            released = connection.execute(
                text("SELECT pg_advisory_unlock(:key)"), {"key": self.key}
            ).scalar_one()
            if not released:
                log.error("the run lock %r was no longer held when the run ended", self.name)
        except SQLAlchemyError as error:
            # The connection is gone, and with it the lock: PostgreSQL released it already.
            detail = describe_db_error(error) if isinstance(error, DBAPIError) else error
            log.warning("could not release the run lock %r cleanly: %s", self.name, detail)
        finally:
            # Never hand a connection that may still hold the lock back to the pool.
            connection.invalidate()
            connection.close()


class FileRunLock(RunLock):
    """An exclusive OS file lock; the kernel drops it when the process ends."""

    def __init__(self, path: Path, name: str) -> None:
        from filelock import FileLock  # only SQLite runs need it

        self.name = name
        self.path = path
        self._lock = FileLock(path, timeout=0, mode=0o600)

    def acquire(self) -> None:
        from filelock import Timeout

        try:
            self._lock.acquire()
        except Timeout:
            raise LockHeld(
                f"another run holds the lock {self.name!r} ({self.path}); this run did nothing"
            ) from None
        except OSError as error:
            raise DatabaseError(f"cannot take the run lock {self.path}: {error.strerror}") from None

    def still_held(self) -> bool:
        return self._lock.is_locked

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release()
