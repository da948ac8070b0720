"""What several `accounts` commands share: the database they open, how an account is
found and shown, the scopes and the confirmation they ask for."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING

import typer

from tokenrefresh.base import defaults
from tokenrefresh.base.scrub import safe_text
from tokenrefresh.base.settings import Settings
from tokenrefresh.cli.options import account_key
from tokenrefresh.errors import UsageError

if TYPE_CHECKING:
    from tokenrefresh.adapters.context import Context
    from tokenrefresh.adapters.crypto import TokenCipher
    from tokenrefresh.base.apps import App
    from tokenrefresh.services.accounts import Accounts
    from tokenrefresh.services.connections import Connections, Revoked, Revoker
    from tokenrefresh.services.refresh.on_demand import OnDemand
    from tokenrefresh.storage.records import AccountView
    from tokenrefresh.storage.repository import Repository

__all__ = [
    "already_revoked",
    "confirm",
    "connections",
    "find",
    "named",
    "opened",
    "revoked_line",
    "revoking",
    "scopes_of",
    "with_providers",
]


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
    if open_id is None:
        return accounts.get(account_id)
    # A user id belongs to an app: the only configured one, else `tiktok` (as `token`).
    from tokenrefresh.base.apps import load_configuration
    from tokenrefresh.services.refresh.apps import key_app

    return accounts.get(None, open_id, key_app(load_configuration(), None))


def named(account: AccountView) -> str:
    """`7 (abc123)`: an account as a terminal may show it (open_ids come from outside)."""
    return f"{account.id} ({safe_text(account.open_id, 255)})"


def connections(context: Context, http_timeout: float) -> Connections:
    """Connect (TikTok's, with the TIKTOK_* credentials) and revoke (each account at its
    own app's provider)."""
    from tokenrefresh.services.connections import Connections

    repository = context.repository()
    cipher = context.cipher(verify_with=repository)
    client = context.client(read_timeout=http_timeout)
    tokens = on_demand(context, repository, cipher, http_timeout)
    return Connections(repository, cipher, client, tokens)


def revoking(context: Context, http_timeout: float) -> Connections:
    """Revoke only: each account at its own app's provider, with that app's credentials."""
    from tokenrefresh.base.apps import load_configuration
    from tokenrefresh.services.connections import Connections, revoke_endpoints

    repository = context.repository()
    cipher = context.cipher(verify_with=repository)

    def build(app: App) -> Revoker:
        return context.client_for(app, read_timeout=http_timeout)

    revokers = revoke_endpoints(load_configuration(), build)
    tokens = on_demand(context, repository, cipher, http_timeout)
    return Connections(repository, cipher, None, tokens, revokers=revokers)


def on_demand(
    context: Context, repository: Repository, cipher: TokenCipher, http_timeout: float
) -> OnDemand:
    """On-demand tokens of every configured app's accounts, each at its own app."""
    from tokenrefresh.base.apps import load_configuration
    from tokenrefresh.services.refresh.apps import app_endpoints
    from tokenrefresh.services.refresh.on_demand import OnDemand

    endpoints = app_endpoints(
        load_configuration(), lambda app: context.client_for(app, read_timeout=http_timeout)
    )
    return OnDemand(repository, cipher, endpoints)


def already_revoked(account: AccountView) -> str:
    to = "TikTok" if account.app == defaults.APP else "its provider"
    return f"Account {named(account)} is already revoked: nothing was sent to {to}."


def revoked_line(revoked: Revoked) -> str:
    provider = revoked.provider
    if revoked.at_tiktok:
        where = f"at {provider}"
    elif not revoked.has_endpoint:
        where = f"here ({provider} has no revoke endpoint: its user removes the app there)"
    else:
        where = f"here ({provider} had no live token of it left)"
    who = f"{revoked.account_id} ({safe_text(revoked.open_id, 255)})"
    return f"Revoked account {who} {where}; tokens erased."
