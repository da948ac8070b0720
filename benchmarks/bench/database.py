"""A PostgreSQL database of the benchmarks' own, made on start and dropped at the end."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL, make_url

from bench.common import BenchmarkError


class BenchDatabase:
    """A PostgreSQL database of our own, made on start and dropped (WITH FORCE) on close."""

    def __init__(self, admin_url: str) -> None:
        url = make_url(admin_url)
        if url.get_backend_name() not in ("postgresql", "postgres"):
            raise BenchmarkError(f"not a PostgreSQL URL: {admin_url}")
        self.admin_url = url.set(drivername="postgresql")
        self.name = f"tokenrefresh_bench_{uuid.uuid4().hex[:10]}"
        self.created = False

    def _conninfo(self, url: URL) -> str:
        return url.render_as_string(hide_password=False)

    @property
    def url(self) -> str:
        """The URL the CLI gets (TOKENREFRESH_DATABASE_URL)."""
        return self._conninfo(self.admin_url.set(database=self.name))

    def create(self) -> None:
        with psycopg.connect(self._conninfo(self.admin_url), autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        self.created = True

    def drop(self) -> None:
        if not self.created:
            return
        with psycopg.connect(self._conninfo(self.admin_url), autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name))
            )
        self.created = False

    def connect(self, *, autocommit: bool = True) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, autocommit=autocommit)

    def execute(self, statement: str, params: Any = None) -> None:
        with self.connect() as connection:
            connection.execute(statement, params)

    def scalar(self, statement: str, params: Any = None) -> Any:
        with self.connect() as connection:
            row = connection.execute(statement, params).fetchone()
            return None if row is None else row[0]

    def reset(self) -> None:
        """Empty every table (each measurement starts from the same state)."""
        self.execute("TRUNCATE accounts, refresh_attempts, runs RESTART IDENTITY CASCADE")

    def due_count(self) -> int:
        """Due accounts by the CLI's rules (window 90m), computed here independently."""
        return int(
            self.scalar(
                "SELECT count(*) FROM accounts WHERE status = 'active'"
                " AND access_expires_at <= now() + interval '90 minutes'"
                " AND refresh_expires_at > now() AND next_attempt_at <= now()"
                " AND refresh_token_ciphertext IS NOT NULL"
                " AND (last_refreshed_at IS NULL OR last_refreshed_at < now())"
            )
        )

    def server_info(self) -> dict[str, str]:
        info: dict[str, str] = {}
        with self.connect() as connection:
            for name in ("server_version", "shared_buffers", "work_mem", "random_page_cost", "jit"):
                row = connection.execute(f"SHOW {name}").fetchone()
                info[name] = "?" if row is None else str(row[0])
        info["version"] = info.pop("server_version")
        return info
