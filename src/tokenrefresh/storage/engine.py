"""The engine factory: one place that knows how SQLite and PostgreSQL are set up.

SQLite: WAL (readers never wait for the writer), a busy timeout, and `BEGIN IMMEDIATE`
for every transaction, so a transaction that reads and then writes cannot fail with
SQLITE_BUSY halfway. PostgreSQL: psycopg 3, pre-ping, TCP keepalives (so a run on a lost
machine lets go of its row locks), an application_name to find it in pg_stat_activity.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError

from tokenrefresh.base.scrub import safe_text, scrub
from tokenrefresh.base.settings import DATABASE_URL, Settings, url_authority
from tokenrefresh.errors import ConfigError
from tokenrefresh.storage.shape import SQLITE_BUSY_TIMEOUT_MS, default_database_path

__all__ = [
    "advisory_key",
    "create_database_engine",
    "default_database_path",
    "describe_db_error",
    "describe_url",
    "is_postgresql",
    "mask_passwords",
    "resolve_database_url",
    "sqlite_path",
]

IDLE_PING_AFTER = 1.0  # seconds a pooled PostgreSQL connection may idle before a ping
DB_ERROR_LIMIT = 500  # characters of a driver's message that are worth showing

# Where a password can stand in a URL or in a driver's message: `password=` and
# `sslpassword=` (query string, libpq conninfo), `://user:PASSWORD@`, and a host name that
# took in the end of a password with an unencoded @ ('ss@host').
_PASSWORD_PARAMETER = re.compile(
    r"(?<![A-Za-z0-9_])((?:ssl)?password\s*=\s*)('[^']*'|[^\s&#'\"]+)", re.IGNORECASE
)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
_HOST_WITH_AT = re.compile(r"""(host(?: name)? ["'])[^"'\s]*@""", re.IGNORECASE)


def resolve_database_url(settings: Settings) -> URL:
    """The configured URL, normalised to a driver we ship; the SQLite default if unset."""
    if settings.database_url is None:
        return URL.create("sqlite", database=str(default_database_path()))
    text = settings.database_url.reveal()
    try:
        url = make_url(text)
    except (ArgumentError, ValueError):
        raise ConfigError(
            f"{DATABASE_URL} is not a database URL: expected e.g. "
            "postgresql://user@host/dbname or sqlite:////path/to/tokenrefresh.db"
        ) from None
    if url_authority(text).count("@") > 1:
        # SQLAlchemy would take the rest of the password for the host, and the driver
        # would then print it in its error ("could not translate host name "ss@host"").
        raise ConfigError(
            f"{DATABASE_URL}: the user name or password holds an unencoded @: "
            "percent-encode it as %40 (e.g. postgresql://user:p%40ss@host/dbname)"
        )
    # Read the names from the URL itself: asking SQLAlchemy would load the dialect, and
    # there is no dialect called "postgres" (nor "redis", ...).
    backend, _, driver = url.drivername.partition("+")
    if backend in ("postgresql", "postgres"):
        if driver and driver != "psycopg":
            raise ConfigError(
                f"{DATABASE_URL}: the driver {driver!r} is not supported; "
                "use postgresql:// (psycopg 3 is installed with tokenrefresh)"
            )
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if driver and driver != "pysqlite":
            raise ConfigError(f"{DATABASE_URL}: the SQLite driver {driver!r} is not supported")
        if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
            raise ConfigError(
                f"{DATABASE_URL}: SQLite needs a file path (sqlite:////abs/path.db); an "
                "in-memory database would forget every token when the command ends"
            )
        if not Path(url.database).expanduser().is_absolute():
            raise ConfigError(
                f"{DATABASE_URL}: the SQLite path must be absolute, sqlite:////abs/path.db "
                "(four slashes): a relative one would put the database wherever the command "
                "runs (under cron, $HOME)"
            )
        return url
    raise ConfigError(
        f"{DATABASE_URL}: {backend!r} is not supported; use postgresql:// or sqlite:///"
    )


def advisory_key(name: str) -> int:
    """A stable signed 64-bit PostgreSQL advisory lock key for a name: 8 bytes of its
    SHA-256 (the run locks' and the migrations' lock)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big", signed=True)


def is_postgresql(url: URL) -> bool:
    return url.drivername.partition("+")[0] == "postgresql"


def sqlite_path(url: URL) -> Path:
    assert url.database is not None
    return Path(url.database).expanduser().resolve()


def describe_url(url: URL) -> str:
    """The URL as safe to print: the password masked, in the user info and the query."""
    shown = url.render_as_string(hide_password=True)
    return safe_text(scrub(mask_passwords(shown)))


def describe_db_error(error: DBAPIError) -> str:
    """The driver's first line, without SQL, parameters or password: safe to show and log.

    Bounded and escaped, since it can repeat what the server or a URL holds.
    """
    original = error.orig
    lines = str(original).strip().splitlines()
    name = type(original).__name__
    text = f"{name}: {lines[0]}" if lines else name
    return safe_text(scrub(mask_passwords(text)), DB_ERROR_LIMIT)


def mask_passwords(text: str) -> str:
    """`***` for every password written where URLs and drivers put one.

    Registered secrets are masked by `scrub`; this also catches a password too short for
    that, or one that never went through Settings.
    """
    text = _PASSWORD_PARAMETER.sub(r"\1***", text)
    text = _URL_PASSWORD.sub(r"\1***@", text)
    return _HOST_WITH_AT.sub(r"\1***@", text)


def create_database_engine(url: URL, *, pool_size: int = 5, create: bool = True) -> Engine:
    """An engine whose pool holds `pool_size` connections (one per worker, plus the run's own).

    `create=False`: a SQLite file that does not exist is an error, not a new empty database
    (only `db upgrade --create` and the embedded default create one).
    """
    if is_postgresql(url):
        return _postgresql_engine(url, pool_size)
    return _sqlite_engine(url, pool_size, create=create)


def _postgresql_engine(url: URL, pool_size: int) -> Engine:
    defaults: dict[str, Any] = {
        "application_name": "tokenrefresh",
        "connect_timeout": 10,
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }
    # libpq's GSSAPI encryption probe (gssencmode=prefer, its default) in psycopg's binary
    # wheel has crashed processes with a segfault in connect (psycopg/psycopg#1213; seen
    # here once, in the tests). Off unless asked for: `?gssencmode=prefer` (or `require`) in
    # the URL, or PGGSSENCMODE, turns it back on for a site that uses Kerberos.
    if "PGGSSENCMODE" not in os.environ:
        defaults["gssencmode"] = "disable"
    connect_args = {key: value for key, value in defaults.items() if key not in url.query}
    engine = create_engine(
        url,
        hide_parameters=True,  # never a ciphertext or open_id in an exception message
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=60,
        connect_args=connect_args,
    )
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection before use, but only one that sat idle for a while.

    pool_pre_ping would add a round trip to every claim of a busy run; a connection handed
    back a moment ago is known to work. A dead one is replaced, as with pool_pre_ping.
    """

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in_at = record.info.pop("checked_in_at", None)
        if checked_in_at is None or time.monotonic() - checked_in_at < IDLE_PING_AFTER:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
            dbapi_connection.rollback()
        except Exception as error:
            raise DisconnectionError("a pooled connection was dead; using a new one") from error


def _sqlite_engine(url: URL, pool_size: int, *, create: bool) -> Engine:
    path = sqlite_path(url)
    if create:
        _create_private_file(path)
    elif not path.is_file():
        raise ConfigError(
            f"{DATABASE_URL}: there is no database at {path}; check the path, or create it "
            "with `tokenrefresh db upgrade --create`"
        )
    engine = create_engine(
        url.set(database=str(path)),
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=60,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # The driver must not open transactions by itself: the "begin" hook below does.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        _switch_to_wal(cursor)
        for pragma in (
            f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
            "foreign_keys=ON",
            "synchronous=NORMAL",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _switch_to_wal(cursor: Any) -> None:
    """`PRAGMA journal_mode=WAL`, waiting for the lock as long as the busy timeout would.

    On a database not yet in WAL mode (a new file), the switch must write the file's header,
    and while another connection holds the write lock SQLite answers "database is locked"
    at once, without calling the busy handler. Processes started together on a new file
    (`db upgrade --create` in pods started together, a first cron run beside a first
    `accounts token`) failed that way. A database already in WAL mode answers at once.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    pause = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            busy = getattr(error, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause * random.uniform(0.5, 1.5))  # jittered: the waiters do not collide
        pause = min(pause * 2, 0.1)


def _create_private_file(path: Path) -> None:
    """Create the SQLite file readable by its owner only (0600), its folder 0700."""
    if path.exists():
        return
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    except OSError as error:
        raise ConfigError(f"cannot create the database file {path}: {error.strerror}") from None
    os.close(descriptor)
