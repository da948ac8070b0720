"""Schema management: Alembic is the source of truth, and commands refuse a stale schema."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from conftest import Cli, PostgresServer
from helpers import HISTORY, finish, snapshot, start
from tokenrefresh.cli import app
from tokenrefresh.storage import schema
from tokenrefresh.storage.engine import create_database_engine
from tokenrefresh.storage.models import Base
from tokenrefresh.storage.shape import SCHEMA_COLUMNS


def test_head_revision_constant_matches_alembic() -> None:
    config = Config()
    config.set_main_option("script_location", str(schema.MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == schema.HEAD_REVISION


def test_the_plain_list_of_columns_is_the_models() -> None:
    """`storage/shape.py` lists what the quick path of `accounts token` checks."""
    mapped = {
        (table.name, column.name)
        for table in Base.metadata.tables.values()
        for column in table.columns
    }
    assert mapped == SCHEMA_COLUMNS


def test_migrations_create_exactly_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_upgrade_is_idempotent(engine: Engine) -> None:
    state = schema.upgrade(engine)
    assert state.before == state.after == schema.HEAD_REVISION


@pytest.mark.postgres
def test_postgresql_without_schema_stops_with_exit_3(
    cli: Cli, postgres_server: PostgresServer
) -> None:
    name = postgres_server.empty_database()
    try:
        url = postgres_server.url(name).render_as_string(hide_password=False)
        result = cli("accounts", "list", env={"TOKENREFRESH_DATABASE_URL": url})
        assert result.exit_code == 3
        assert "run `tokenrefresh db upgrade`" in result.stderr
        assert cli("db", "current", env={"TOKENREFRESH_DATABASE_URL": url}).exit_code == 3
        stale = cli("db", "current", "--json", env={"TOKENREFRESH_DATABASE_URL": url})
        assert stale.exit_code == 3
        assert stale.json()["revision"] is None
        assert (stale.json()["head"], stale.json()["current"]) == (schema.HEAD_REVISION, False)

        upgraded = cli("db", "upgrade", env={"TOKENREFRESH_DATABASE_URL": url})
        assert upgraded.exit_code == 0, upgraded.stderr
        assert f"to revision {schema.HEAD_REVISION}" in upgraded.stdout
        assert cli("accounts", "list", env={"TOKENREFRESH_DATABASE_URL": url}).exit_code == 0
        current = cli("db", "current", env={"TOKENREFRESH_DATABASE_URL": url})
        assert current.exit_code == 0
        assert f"revision {schema.HEAD_REVISION}" in current.stdout
        as_json = cli("db", "current", "--json", env={"TOKENREFRESH_DATABASE_URL": url})
        assert as_json.exit_code == 0
        assert set(as_json.json()) == {"database", "revision", "head", "current"}
        assert (as_json.json()["revision"], as_json.json()["current"]) == (
            schema.HEAD_REVISION,
            True,
        )
    finally:
        postgres_server.drop(name)


def test_a_newer_schema_is_refused(cli: Cli, engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    result = cli("status")
    assert result.exit_code == 3
    assert "newer than this tokenrefresh knows" in result.stderr
    assert "upgrade tokenrefresh" in result.stderr


def test_db_upgrade_refuses_a_newer_schema_and_changes_nothing(cli: Cli, engine: Engine) -> None:
    """A database a newer tokenrefresh migrated: exit 3 as every other command says, not an
    `unexpected CommandError`, and nothing touched."""
    with engine.begin() as connection:
        newer = f"{int(schema.HEAD_REVISION) + 1:04d}"  # the next revision, not yet written
        connection.execute(text(f"UPDATE alembic_version SET version_num = '{newer}'"))
    before = snapshot(engine, [*HISTORY, "alembic_version"])
    result = cli("db", "upgrade")
    assert result.exit_code == 3
    assert result.stderr == (
        f"error: the database schema is at revision {newer}, newer than this tokenrefresh knows "
        f"({schema.HEAD_REVISION}): upgrade tokenrefresh\n"
    )
    assert result.stdout == ""
    assert snapshot(engine, [*HISTORY, "alembic_version"]) == before


def test_db_upgrade_names_a_revision_it_cannot_place(cli: Cli, engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0003x'"))
    result = cli("db", "upgrade")
    assert result.exit_code == 3
    assert result.stderr == (
        "error: cannot migrate the database schema: Can't locate revision identified by '0003x'\n"
    )
    assert snapshot(engine, ["alembic_version"]) == {"alembic_version": [("0003x",)]}


def _upgrade_together(env: dict[str, str], count: int = 4) -> list[tuple[int, str, str]]:
    """`count` real `tokenrefresh db upgrade` processes, started together."""
    processes = [start(env, "db", "upgrade", "--create") for _ in range(count)]
    return [finish(process) for process in processes]


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_concurrent_upgrades_of_an_empty_postgresql_database_all_succeed(
    postgres_server: PostgresServer, env_for: Callable[[str], dict[str, str]], attempt: int
) -> None:
    """Pods started together: without a lock, some failed with UniqueViolation. A race, so
    three fresh databases (without the lock, at least one of them failed in every run)."""
    name = postgres_server.empty_database()
    try:
        url = postgres_server.url(name).render_as_string(hide_password=False)
        results = _upgrade_together(env_for(url))
        assert [code for code, _, _ in results] == [0, 0, 0, 0], [err for _, _, err in results]
        assert all(err == "" for _, _, err in results)
        outputs = sorted(out for _, out, _ in results)
        assert outputs[0].startswith("The schema of ")  # the three that waited
        assert outputs[-1].startswith("Upgraded ")  # the one that migrated
        assert sum(out.startswith("Upgraded ") for out in outputs) == 1
        _assert_at_head(create_database_engine(make_url(url).set(drivername="postgresql+psycopg")))
    finally:
        postgres_server.drop(name)


@pytest.mark.slow
def test_concurrent_upgrades_of_a_new_sqlite_database_all_succeed(
    tmp_path: Path, env_for: Callable[[str], dict[str, str]]
) -> None:
    path = tmp_path / "new" / "tokens.db"
    results = _upgrade_together(env_for(f"sqlite:///{path}"))
    assert [code for code, _, _ in results] == [0, 0, 0, 0], [err for _, _, err in results]
    assert sum(out.startswith("Upgraded ") for _, out, _ in results) == 1
    _assert_at_head(create_database_engine(make_url(f"sqlite:///{path}"), create=False))


def test_only_db_upgrade_creates_a_sqlite_database(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "new" / "place" / "tokens.db"
    url = {"TOKENREFRESH_DATABASE_URL": f"sqlite:///{path}"}
    for args in (["accounts", "list"], ["status"], ["db", "current"], ["refresh"]):
        refused = cli(*args, env=url)
        assert refused.exit_code == 3, args
        assert refused.stderr == (
            f"error: TOKENREFRESH_DATABASE_URL: there is no database at {path}; check the "
            "path, or create it with `tokenrefresh db upgrade --create`\n"
        )
        assert not (tmp_path / "new").exists(), "a mistyped path must not become a database"

    # `db upgrade` too: a typo'd path would otherwise become an empty database that every
    # later run reads as "nothing to refresh".
    for args in (["db", "upgrade"], ["db", "upgrade", "-q"]):
        refused = cli(*args, env=url)
        assert refused.exit_code == 3, args
        assert "create it with `tokenrefresh db upgrade --create`" in refused.stderr
        assert not (tmp_path / "new").exists(), "db upgrade without --create made a database"

    created = cli("db", "upgrade", "--create", env=url)
    assert created.exit_code == 0, created.stderr
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    listed = cli("accounts", "list", env=url)
    assert listed.exit_code == 0, listed.stderr
    assert listed.stdout == "No accounts.\n"
    assert cli("db", "current", env=url).exit_code == 0


def test_unreachable_database_is_a_configuration_error(cli: Cli) -> None:
    url = "postgresql://nobody@127.0.0.1:1/none"
    result = cli("status", env={"TOKENREFRESH_DATABASE_URL": url})
    assert result.exit_code == 3
    assert result.stderr.startswith(
        "error: cannot use the database postgresql+psycopg://nobody@127.0.0.1:1/none"
    )


def test_password_in_database_url_is_never_shown(cli: Cli) -> None:
    url = "postgresql://someone:hunter2-secret@127.0.0.1:1/none"
    result = cli("status", env={"TOKENREFRESH_DATABASE_URL": url})
    assert result.exit_code == 3
    assert "hunter2-secret" not in result.stderr + result.stdout
    assert "someone:***@" in result.stderr


def _upgrade_to(url: str, revision: str) -> None:
    from alembic import command

    engine = create_database_engine(make_url(url).set(drivername=_driver(url)))
    config = Config()
    config.set_main_option("script_location", str(schema.MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    engine.dispose()


def _driver(url: str) -> str:
    return "postgresql+psycopg" if url.startswith("postgresql") else "sqlite"


@pytest.mark.postgres
def test_postgresql_at_an_older_revision_is_upgraded_only_on_request(
    cli: Cli, postgres_server: PostgresServer
) -> None:
    name = postgres_server.empty_database()
    try:
        url = postgres_server.url(name).render_as_string(hide_password=False)
        _upgrade_to(url, "0001")
        env = {"TOKENREFRESH_DATABASE_URL": url}
        stale = cli("refresh", "--dry-run", env=env)
        assert stale.exit_code == 3
        assert stale.stderr == (
            f"error: the database schema is at revision 0001, this tokenrefresh needs "
            f"{schema.HEAD_REVISION}: run `tokenrefresh db upgrade`\n"
        )
        upgraded = cli("db", "upgrade", env=env)
        assert upgraded.exit_code == 0, upgraded.stderr
        assert f"from 0001 to revision {schema.HEAD_REVISION}" in upgraded.stdout
        assert cli("refresh", "--dry-run", env=env).exit_code == 0
    finally:
        postgres_server.drop(name)


def test_sqlite_at_an_older_revision_is_upgraded_on_first_use(cli: Cli, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    _upgrade_to(url, "0001")
    result = cli("accounts", "list", env={"TOKENREFRESH_DATABASE_URL": url})
    assert result.exit_code == 0, result.stderr
    current = cli("db", "current", env={"TOKENREFRESH_DATABASE_URL": url})
    assert current.exit_code == 0
    assert f"revision {schema.HEAD_REVISION}" in current.stdout


@pytest.mark.parametrize("start", ["0001", "0002", "0003", "0004", "0005"])
def test_an_sqlite_upgrade_keeps_every_row(tmp_path: Path, start: str) -> None:
    """A migration that changes a constraint copies the table on SQLite; with foreign keys
    on, dropping the old copy would cascade to every attempt and spent-token row."""
    url = f"sqlite:///{tmp_path / 'older.db'}"
    _upgrade_to(url, start)
    engine = create_database_engine(make_url(url))
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO accounts (id, open_id, access_expires_at, refresh_expires_at, "
                "scope, status, token_generation, consecutive_failures, next_attempt_at, "
                "created_at, updated_at) VALUES (1, 'user0', '2026-11-29 00:00:00', "
                "'2027-05-01 00:00:00', '', 'active', 1, 0, '2026-11-29 00:00:00', "
                "'2026-11-29 00:00:00', '2026-11-29 00:00:00')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO refresh_attempts (account_id, attempted_at, outcome, duration_ms) "
                "VALUES (1, '2026-11-29 00:00:00', 'refreshed', 5)"
            )
        )
    engine.dispose()

    upgraded = CliRunner().invoke(app, ["db", "upgrade"], env={"TOKENREFRESH_DATABASE_URL": url})

    assert upgraded.exit_code == 0, upgraded.output
    engine = create_database_engine(make_url(url))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT app, open_id FROM accounts")).all() == [
            ("tiktok", "user0")  # every account from before apps belongs to `tiktok`
        ]
        assert connection.execute(text("SELECT count(*) FROM refresh_attempts")).scalar_one() == 1
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    engine.dispose()


def _assert_at_head(engine: Engine) -> None:
    """One revision stamp, the newest, and every table and column of it; then disposed."""
    try:
        assert snapshot(engine, ["alembic_version"]) == {
            "alembic_version": [(schema.HEAD_REVISION,)]
        }
        assert schema.missing_parts(engine) == []
    finally:
        engine.dispose()
