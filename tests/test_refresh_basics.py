"""The main job, end to end through the CLI, on SQLite and PostgreSQL."""

from __future__ import annotations

from conftest import Cli
from standin import TikTokStandIn


def test_refresh_rotates_and_stores_every_due_account(
    cli: Cli, standin: TikTokStandIn, add_accounts
) -> None:
    issued = add_accounts(3)
    result = cli("refresh", "--window", "3h", "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["counts"] == {"refreshed": 3, "expired": 0, "failed": 0, "skipped": 0, "lost": 0}
    for tokens in issued:
        assert standin.presented()[tokens.refresh_token] == 1
    token = cli("accounts", "token", "--open-id", "user0")
    assert token.exit_code == 0
    assert token.stdout.startswith("act.")
