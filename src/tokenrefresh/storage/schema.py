"""Schema revisions: upgrade with Alembic, and a fast check that the schema is current.

The check reads `alembic_version` directly and compares it with HEAD_REVISION, so that
ordinary commands do not import Alembic; a test keeps HEAD_REVISION equal to Alembic's head.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, inspect, text

from tokenrefresh.errors import SchemaNotCurrent

__all__ = ["HEAD_REVISION", "SchemaState", "current_revision", "ensure_current", "upgrade"]

HEAD_REVISION = "0002"
MIGRATIONS = Path(__file__).with_name("migrations")


@dataclass(frozen=True)
class SchemaState:
    before: str | None
    after: str


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine) -> SchemaState:
    """Migrate the schema to the newest revision; a no-op when it is current."""
    from alembic import command
    from alembic.config import Config

    before = current_revision(engine)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return SchemaState(before=before, after=current_revision(engine) or "")


def ensure_current(engine: Engine, *, auto_upgrade: bool) -> None:
    """Stop unless the schema is at HEAD_REVISION; `auto_upgrade` migrates instead (SQLite)."""
    revision = current_revision(engine)
    if revision == HEAD_REVISION:
        return
    if revision is not None and revision > HEAD_REVISION:
        raise SchemaNotCurrent(
            f"the database schema is at revision {revision}, newer than this tokenrefresh "
            f"knows ({HEAD_REVISION}): upgrade tokenrefresh"
        )
    if auto_upgrade:
        upgrade(engine)
        return
    if revision is None:
        raise SchemaNotCurrent(
            "the database has no tokenrefresh schema yet: run `tokenrefresh db upgrade`"
        )
    raise SchemaNotCurrent(
        f"the database schema is at revision {revision}, this tokenrefresh needs "
        f"{HEAD_REVISION}: run `tokenrefresh db upgrade`"
    )
