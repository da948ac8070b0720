"""The `db` commands' service: where the schema stands, and moving it to the newest revision."""

from __future__ import annotations

from dataclasses import dataclass

from tokenrefresh.adapters.context import Context
from tokenrefresh.storage import schema
from tokenrefresh.storage.engine import describe_url

__all__ = ["SchemaReport", "schema_status", "upgrade_schema"]


@dataclass(frozen=True)
class SchemaReport:
    """The database (its URL, password masked), its revision before and now, and the head."""

    where: str
    before: str | None
    revision: str | None
    head: str = schema.HEAD_REVISION

    @property
    def is_current(self) -> bool:
        return self.revision == self.head


def upgrade_schema(context: Context, *, create: bool = False) -> SchemaReport:
    """Create the schema or migrate it.

    A SQLite file named in the URL is created only when asked (`create`, `db upgrade
    --create`): a mistyped path must be an error, not a new empty database that every later
    run would read as "no accounts". The embedded default is created either way.
    """
    state = schema.upgrade(context.engine(check_schema=False, create=create))
    return SchemaReport(describe_url(context.database_url), state.before, state.after)


def schema_status(context: Context) -> SchemaReport:
    """The database's revision, compared with the one this version needs."""
    revision = schema.current_revision(context.engine(check_schema=False))
    return SchemaReport(describe_url(context.database_url), revision, revision)
