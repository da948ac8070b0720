"""Accounts belong to an app (migration 0006): a database of the previous revision upgrades
in place, every account it holds belongs to the app `tiktok`, and it keeps refreshing them
without a configuration file; a user id is unique within its app, not across apps; and
`accounts list --json` says each account's app, provider and user id."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from conftest import Cli
from helpers import AddAccounts, counts
from standin import TikTokStandIn
from tokenrefresh.storage import schema

PREVIOUS = "0005"  # the head before accounts belonged to apps


def migrate(engine: Engine, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(schema.MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        if revision < schema.HEAD_REVISION:
            command.downgrade(config, revision)
        else:
            command.upgrade(config, revision)
    engine.dispose()


def columns(engine: Engine) -> set[str]:
    names = {column["name"] for column in inspect(engine).get_columns("accounts")}
    engine.dispose()
    return names


def test_a_database_of_the_previous_revision_upgrades_and_keeps_refreshing_its_accounts(
    cli: Cli, standin: TikTokStandIn, add_accounts: AddAccounts, engine: Engine
) -> None:
    issued = add_accounts(2)
    migrate(engine, PREVIOUS)
    assert "app" not in columns(engine)

    upgraded = cli("db", "upgrade")

    assert upgraded.exit_code == 0, upgraded.stderr
    assert f"from {PREVIOUS} to revision {schema.HEAD_REVISION}" in upgraded.stdout
    listed = cli("accounts", "list", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert [
        (entry["app"], entry["provider"], entry["user_id"], entry["open_id"])
        for entry in listed.json()["accounts"]
    ] == [("tiktok", "tiktok", tokens.open_id, tokens.open_id) for tokens in issued]
    refreshed = cli("refresh", "--window", "3h", "--json")
    assert refreshed.exit_code == 0, refreshed.stderr
    assert refreshed.json()["counts"] == counts(refreshed=2)
    for tokens in issued:
        assert standin.presented()[tokens.refresh_token] == 1


def test_a_user_id_is_unique_within_its_app_not_across_apps(engine: Engine) -> None:
    row = (
        "INSERT INTO accounts (app, open_id, access_expires_at, refresh_expires_at, scope, "
        "status, token_generation, consecutive_failures, next_attempt_at, created_at, "
        "updated_at) VALUES (:app, 'user-1', '2026-12-03 00:00:00', '2027-06-01 00:00:00', '', "
        "'active', 1, 0, '2026-12-03 00:00:00', '2026-12-03 00:00:00', '2026-12-03 00:00:00')"
    )
    with engine.begin() as connection:
        connection.execute(text(row), {"app": "tiktok"})
        connection.execute(text(row), {"app": "tiktok-eu"})
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(text(row), {"app": "tiktok-eu"})
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT app, open_id FROM accounts ORDER BY app"))
        assert stored.all() == [("tiktok", "user-1"), ("tiktok-eu", "user-1")]
    engine.dispose()


def test_an_account_of_an_app_the_configuration_does_not_name_has_no_provider(
    cli: Cli, add_accounts: AddAccounts, tmp_path: Path
) -> None:
    add_accounts(1)
    config = tmp_path / "config.toml"
    config.write_text('[apps.insta]\nprovider = "instagram"\n')
    listed = cli("accounts", "list", "--json", env={"TOKENREFRESH_CONFIG": str(config)})
    assert listed.exit_code == 0, listed.stderr
    [entry] = listed.json()["accounts"]
    assert (entry["app"], entry["provider"], entry["user_id"]) == ("tiktok", None, "user0")
