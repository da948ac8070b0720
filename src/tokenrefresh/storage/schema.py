"""Schema revisions: upgrade with Alembic, and a fast check that the schema is current.

The check reads `alembic_version` directly and compares it with HEAD_REVISION, so that
ordinary commands do not import Alembic; a test keeps HEAD_REVISION equal to Alembic's head.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, inspect, text

from tokenrefresh.errors import SchemaNotCurrent
from tokenrefresh.storage.engine import advisory_key
from tokenrefresh.storage.models import Base
from tokenrefresh.storage.shape import COLUMNS_PRESENT, HEAD_REVISION

__all__ = [
    "HEAD_REVISION",
    "SchemaState",
    "current_revision",
    "ensure_current",
    "missing_parts",
    "upgrade",
]

UPGRADE_LOCK = "tokenrefresh:db-upgrade"  # the advisory lock's name (PostgreSQL)
MIGRATIONS = Path(__file__).with_name("migrations")


@dataclass(frozen=True)
class SchemaState:
    before: str | None
    after: str


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return _revision(connection)


def _revision(connection: Connection) -> str | None:
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine) -> SchemaState:
    """Migrate the schema to the newest revision; a no-op when it is current.

    One upgrade at a time (pods started together, `db upgrade` beside a first use): the
    others wait, then find the schema current. PostgreSQL: a transaction advisory lock,
    the first statement of the migration's own transaction, so PostgreSQL releases it at
    commit or when the process dies (and it works through PgBouncer in transaction mode).
    SQLite: the transaction begins IMMEDIATE, which takes the database's write lock.
    """
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as connection, _foreign_keys_off(connection), connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": advisory_key(UPGRADE_LOCK)}
            )
        before = _revision(connection)
        _refuse_newer(before)
        config.attributes["connection"] = connection
        try:
            command.upgrade(config, "head")
        except CommandError as error:  # a revision Alembic cannot place
            raise SchemaNotCurrent(f"cannot migrate the database schema: {error}") from None
    return SchemaState(before=before, after=current_revision(engine) or "")


def _refuse_newer(revision: str | None) -> None:
    """A schema a newer tokenrefresh made is never touched: not used, not migrated."""
    if revision is not None and revision > HEAD_REVISION:
        raise SchemaNotCurrent(
            f"the database schema is at revision {revision}, newer than this tokenrefresh "
            f"knows ({HEAD_REVISION}): upgrade tokenrefresh"
        )


@contextmanager
def _foreign_keys_off(connection: Connection) -> Iterator[None]:
    """SQLite: foreign keys off while migrating, checked after.

    A migration that changes a constraint has Alembic copy the table, drop the old one and
    rename the copy; with foreign keys on, that DROP would cascade and delete every row
    that refers to the table (attempts, spent tokens). The switch only works outside a
    transaction, so it is set on the driver's connection before the migration begins.
    """
    if connection.dialect.name != "sqlite":
        yield
        return
    driver = connection.connection.dbapi_connection
    assert driver is not None
    driver.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
        broken = driver.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise SchemaNotCurrent(
                f"the migration left {len(broken)} row(s) pointing at rows that do not exist"
            )
    finally:
        driver.execute("PRAGMA foreign_keys=ON")


def ensure_current(engine: Engine, *, auto_upgrade: bool) -> None:
    """Stop unless the schema is at HEAD_REVISION; `auto_upgrade` migrates instead (SQLite)."""
    revision = current_revision(engine)
    if revision == HEAD_REVISION:
        _ensure_complete(engine)
        return
    _refuse_newer(revision)
    if auto_upgrade:
        upgrade(engine)
        _ensure_complete(engine)
        return
    if revision is None:
        raise SchemaNotCurrent(
            "the database has no tokenrefresh schema yet: run `tokenrefresh db upgrade`"
        )
    raise SchemaNotCurrent(
        f"the database schema is at revision {revision}, this tokenrefresh needs "
        f"{HEAD_REVISION}: run `tokenrefresh db upgrade`"
    )


def missing_parts(engine: Engine) -> list[str]:
    """Tables and columns the models need that the database lacks (one catalog query)."""
    with engine.connect() as connection:
        rows = connection.execute(text(COLUMNS_PRESENT[engine.dialect.name])).all()
    present: dict[str, set[str]] = {}
    for table, column in rows:
        present.setdefault(table, set()).add(column)
    missing: list[str] = []
    for table in Base.metadata.sorted_tables:
        if table.name not in present:
            missing.append(f"table {table.name}")
            continue
        missing += [
            f"column {table.name}.{column.name}"
            for column in table.columns
            if column.name not in present[table.name]
        ]
    return missing


def _ensure_complete(engine: Engine) -> None:
    """The revision stamp can say current while a table or column was dropped by hand: then
    TikTok would be called and its answers could not be stored. Stop before that."""
    missing = missing_parts(engine)
    if missing:
        listed = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise SchemaNotCurrent(
            f"the database schema is stamped revision {HEAD_REVISION} but lacks {listed}: it "
            "was changed outside tokenrefresh; restore it from a backup (nothing was changed)"
        )
