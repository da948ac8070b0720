"""What the schema is, in plain Python: its Alembic head, its tables and columns, where the
embedded default lives and SQLite's busy timeout. `schema.py` and `engine.py` use these
with SQLAlchemy, `quickread.py` without it; a test keeps them equal to Alembic's head and
to the models."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "COLUMNS_PRESENT",
    "HEAD_REVISION",
    "SCHEMA_COLUMNS",
    "SQLITE_BUSY_TIMEOUT_MS",
    "default_database_path",
    "read_moment",
]

HEAD_REVISION = "0006"

# How long a SQLite connection waits for another's write lock before giving up.
SQLITE_BUSY_TIMEOUT_MS = 30_000

_TABLES = {
    "accounts": (
        "id app open_id label access_token_ciphertext refresh_token_ciphertext access_expires_at "
        "refresh_expires_at scope status token_generation refresh_token_fingerprint "
        "tokens_issued_at lease_owner lease_expires_at refresh_expiry_warned last_refreshed_at "
        "last_error consecutive_failures next_attempt_at created_at updated_at"
    ),
    "key_check": "id ciphertext updated_at",
    "outbox": (
        "id event_id type account_id dedupe_key payload created_at next_attempt_at attempts "
        "delivered_at dropped_at last_error"
    ),
    "runs": "id command host pid shard started_at finished_at outcome exit_code counts message",
    "refresh_attempts": (
        "id account_id run_id attempted_at outcome http_status error_code log_id duration_ms "
        "message"
    ),
    "spent_refresh_tokens": "fingerprint account_id spent_at",
}
# (table, column) for every column the models map.
SCHEMA_COLUMNS = frozenset(
    (table, column) for table, columns in _TABLES.items() for column in columns.split()
)

# (table, column) of every table in the database, by dialect: one plain catalog query (the
# columns of the tables in the current schema, as SQLAlchemy's reflection reads them,
# without reflecting each column's type, which cost about 10 ms a command).
COLUMNS_PRESENT = {
    "sqlite": (
        "SELECT m.name, p.name FROM sqlite_master AS m, pragma_table_info(m.name) AS p "
        "WHERE m.type = 'table'"
    ),
    "postgresql": (
        "SELECT c.relname, a.attname FROM pg_catalog.pg_class AS c "
        "JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.oid "
        "WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p') "
        "AND a.attnum > 0 AND NOT a.attisdropped"
    ),
}


def default_database_path() -> Path:
    """`tokenrefresh.db` in the user data dir (e.g. ~/.local/share/tokenrefresh)."""
    from platformdirs import user_data_path  # only needed when no URL is configured

    return user_data_path("tokenrefresh", appauthor=False) / "tokenrefresh.db"


def read_moment(value: Any) -> datetime | None:
    """A stored moment as it is read back: aware, in UTC. SQLite stores naive UTC text;
    PostgreSQL hands over datetimes."""
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
