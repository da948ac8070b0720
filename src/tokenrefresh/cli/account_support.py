"""What several `accounts` commands share: the database they open, how an account is
found and shown, the scopes and the confirmation they ask for."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING

import typer

from tokenrefresh.base.scrub import safe_text
from tokenrefresh.base.settings import Settings
from tokenrefresh.cli.options import account_key
from tokenrefresh.errors import UsageError

if TYPE_CHECKING:
    from tokenrefresh.adapters.context import Context
    from tokenrefresh.services.accounts import Accounts
    from tokenrefresh.storage.records import AccountView

__all__ = ["confirm", "find", "named", "opened", "scopes_of", "with_providers"]


@contextmanager
def opened() -> Iterator[tuple[Context, Accounts]]:
    """The command's context (a small pool: no accounts command needs more than two
    connections at once) and the accounts service over its database."""
    from tokenrefresh.adapters.context import Context
    from tokenrefresh.services.accounts import Accounts

    with Context(Settings.from_env(), pool_size=2) as context:
        yield context, Accounts(context.repository())


def with_providers(accounts: list[AccountView]) -> list[AccountView]:
    """The accounts with their app's provider, as the configuration names it (None for an
    app the configuration no longer has)."""
    from tokenrefresh.base.apps import providers_by_app

    by_app = providers_by_app()
    return [replace(account, provider=by_app.get(account.app)) for account in accounts]


def scopes_of(values: list[str], option: str) -> tuple[str, ...]:
    """The scopes of a repeatable option, each value split at commas (TikTok joins scopes
    with commas, so no scope holds one); exit 2 naming the option for a bad one."""
    from tokenrefresh.base.scopes import check_scopes

    try:
        return check_scopes(values)
    except ValueError as error:
        raise UsageError(f"{option}: {error}") from None


def confirm(yes: bool, doing: str, question: str) -> None:
    if yes:
        return
    if sys.stdin is None or not sys.stdin.isatty():
        raise UsageError(f"{doing} an account needs --yes when not run interactively")
    typer.confirm(question, abort=True)


def find(accounts: Accounts, account: str | None, open_id: str | None) -> AccountView:
    """The account an ACCOUNT argument or --open-id names (see `account_key`)."""
    account_id, open_id = account_key(account, open_id)
    return accounts.get(account_id, open_id)


def named(account: AccountView) -> str:
    """`7 (abc123)`: an account as a terminal may show it (open_ids come from outside)."""
    return f"{account.id} ({safe_text(account.open_id, 255)})"
