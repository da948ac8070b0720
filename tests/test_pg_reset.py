"""The suite's own isolation: a used PostgreSQL database is handed to another test only when
it is as good as new (emptied, and equal to the template in everything else)."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from conftest import PostgresServer

# Each changes what a test could change beside rows; none may reach the next test.
CHANGES = {
    "a trigger": [
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'no'; END $$",
        "CREATE TRIGGER refuse BEFORE UPDATE ON accounts FOR EACH ROW EXECUTE FUNCTION refuse()",
    ],
    "a dropped column": ["ALTER TABLE accounts DROP COLUMN label"],
    "a dropped table": ["DROP TABLE spent_refresh_tokens"],
    "a new table": ["CREATE TABLE extra (id int)"],
    "an index": ["CREATE INDEX extra_idx ON accounts (label)"],
    "a database setting": ["ALTER DATABASE {db} SET default_transaction_read_only = on"],
    "a grant": ["REVOKE ALL ON accounts FROM PUBLIC", "GRANT SELECT ON accounts TO PUBLIC"],
    "a schema revision": ["UPDATE alembic_version SET version_num = '0001'"],
    "a sequence of its own": ["CREATE SEQUENCE extra_seq", "SELECT nextval('extra_seq')"],
    "a default": ["ALTER TABLE accounts ALTER COLUMN label SET DEFAULT 'x'"],
    "a view": ["CREATE VIEW extra_view AS SELECT 1 AS one"],
    "a new schema": ["CREATE SCHEMA extra"],
}


def run(server: PostgresServer, name: str, *statements: str) -> None:
    engine = create_engine(server.url(name), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            for statement in statements:
                connection.execute(text(statement.format(db=f'"{name}"')))
    finally:
        engine.dispose()


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_database_a_test_changed_is_not_handed_on(
    postgres_server: PostgresServer, change: str
) -> None:
    name = postgres_server.fresh_database()
    try:
        assert postgres_server.as_new(name)  # untouched: as good as new
        run(postgres_server, name, *CHANGES[change])
        assert not postgres_server.as_new(name), change
    finally:
        postgres_server.drop(name)


def test_rows_sequences_and_open_sessions_are_reset(postgres_server: PostgresServer) -> None:
    name = postgres_server.fresh_database()
    engine = create_engine(postgres_server.url(name))
    try:
        insert = text(
            "INSERT INTO accounts (open_id, scope, access_token_ciphertext, "
            "refresh_token_ciphertext, access_expires_at, refresh_expires_at, status, "
            "token_generation, consecutive_failures, next_attempt_at, created_at, updated_at) "
            "VALUES (:who, 'user.info.basic', 'a', 'r', now(), now(), 'active', 1, 0, "
            "now(), now(), now()) RETURNING id"
        )
        with engine.begin() as connection:
            assert connection.execute(insert, {"who": "one"}).scalar() == 1
            assert connection.execute(insert, {"who": "two"}).scalar() == 2
        held = engine.connect()  # a session the test left open, holding a lock
        held.execute(text("SELECT pg_advisory_lock(42)"))
        assert postgres_server.as_new(name)
        fresh_engine = create_engine(postgres_server.url(name))
        with fresh_engine.begin() as fresh:
            assert fresh.execute(text("SELECT count(*) FROM accounts")).scalar() == 0
            assert fresh.execute(insert, {"who": "one"}).scalar() == 1  # identity restarted
            assert fresh.execute(text("SELECT pg_try_advisory_lock(42)")).scalar() is True
        fresh_engine.dispose()
        held.invalidate()
    finally:
        engine.dispose()
        postgres_server.drop(name)
