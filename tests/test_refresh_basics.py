"""The main job, end to end through the CLI, on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import Engine

from conftest import Cli
from helpers import stored_tokens
from standin import TikTokStandIn


def test_refresh_rotates_and_stores_every_due_account(
    cli: Cli, standin: TikTokStandIn, add_accounts, engine: Engine, fernet_key: str
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

    # What is stored is what TikTok issued last: the next refresh presents exactly that
    # token, once, and it works.
    newest = {}
    for tokens in issued:
        newest[tokens.open_id] = standin.current_refresh_token(tokens.open_id)
        assert newest[tokens.open_id] not in (None, tokens.refresh_token)
        assert stored_tokens(engine, tokens.open_id, fernet_key)[1] == newest[tokens.open_id]
    standin.reset_log()
    again = cli("refresh", "--window", "3h", "--json")
    assert again.json()["counts"]["refreshed"] == 3
    assert standin.presented() == dict.fromkeys(newest.values(), 1)
