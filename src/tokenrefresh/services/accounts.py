"""Account management: import, look up, enable, disable, remove (tokens are handed out by
`refresh/on_demand.py`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from tokenrefresh.adapters.crypto import TokenCipher, fingerprint
from tokenrefresh.base import defaults
from tokenrefresh.base.clock import Clock, utcnow
from tokenrefresh.errors import AccountNotFound, UsageError
from tokenrefresh.services.importer import parse_accounts
from tokenrefresh.services.refresh.report import RECONNECT_HOW
from tokenrefresh.storage.records import (
    AccountLine,
    AccountStatus,
    AccountView,
    AttemptView,
    NewAccount,
)
from tokenrefresh.storage.repository import Repository

if TYPE_CHECKING:
    from tokenrefresh.base.apps import App

__all__ = ["AccountDetails", "Accounts", "ImportReport"]


@dataclass(frozen=True)
class ImportReport:
    created: int
    updated: int
    unchanged: int = 0
    app: str = defaults.APP  # the app the accounts were imported into


@dataclass(frozen=True)
class AccountDetails:
    account: AccountView
    attempts: list[AttemptView]


class Accounts:
    """The `accounts` commands' service."""

    def __init__(self, repository: Repository, clock: Clock = utcnow) -> None:
        self._repository = repository
        self._clock = clock

    def import_lines(
        self,
        lines: Iterable[str],
        cipher: TokenCipher,
        *,
        force: bool = False,
        app: App | None = None,
    ) -> ImportReport:
        """Parse every line first, then upsert all of them into `app` in one transaction.

        Each line is in the shape of the app's provider's token answer; without an app, the
        `tiktok` app of a configuration without a file. Lines that would put back a spent
        refresh token, or a pair older than the stored one, make the whole import fail
        (exit 2) unless `force`.
        """
        parsed = parse_accounts(lines, self._clock(), app.profile if app else None)
        name = app.name if app else defaults.APP
        counts = self._repository.import_accounts(
            [
                NewAccount(
                    **{name.name: getattr(account, name.name) for name in fields(AccountLine)},
                    access_token_ciphertext=cipher.encrypt(account.access_token),
                    refresh_token_ciphertext=cipher.encrypt(account.refresh_token),
                    refresh_token_fingerprint=fingerprint(account.refresh_token),
                )
                for account in parsed
            ],
            force=force,
            app=name,
        )
        return ImportReport(
            created=counts.created, updated=counts.updated, unchanged=counts.unchanged, app=name
        )

    def list(
        self, status: str | None = None, missing_scopes: Iterable[str] = ()
    ) -> list[AccountView]:
        """Every account, or those with this status (`active`, `expired`, `disabled`),
        and of those, with `missing_scopes`, the ones whose consent lacks one of them."""
        return self._repository.list_accounts(
            AccountStatus(status) if status else None, missing_scopes=frozenset(missing_scopes)
        )

    def get(
        self, account_id: int | None = None, open_id: str | None = None, app: str = defaults.APP
    ) -> AccountView:
        """By id, or by user id (`open_id`) within `app`."""
        if open_id is not None:
            found = self._repository.find_account(open_id, app)
            if found is None:
                raise AccountNotFound.by_key(None, open_id)
            return found
        assert account_id is not None
        account = self._repository.get_account(account_id)
        if account is None:
            raise AccountNotFound.by_key(account_id, None)
        return account

    def details(self, account_id: int, attempts: int) -> AccountDetails:
        account = self.get(account_id)
        return AccountDetails(account, self._repository.recent_attempts(account_id, attempts))

    def remove(self, account_id: int) -> None:
        if not self._repository.remove_account(account_id):
            raise AccountNotFound.by_key(account_id, None)

    def set_enabled(self, account_id: int, enabled: bool) -> AccountView:
        """Disable an account, or make it active again if it has a usable refresh token."""
        if not enabled:
            if not self._repository.disable(account_id):
                raise AccountNotFound.by_key(account_id, None)
            return self.get(account_id)
        if not self._repository.enable(account_id):
            account = self.get(account_id)  # AccountNotFound if there is none
            if account.status == AccountStatus.REVOKED:
                why = "was revoked (its tokens erased)"
            elif not account.has_tokens:
                why = "has no stored refresh token (erased after it expired)"
            else:
                why = "has a refresh token past its expiry"
            raise UsageError(
                f"account {account.id} ({account.open_id}) {why}, so enabling it would refresh "
                f"nothing: its user must reconnect {RECONNECT_HOW}; either makes it active)"
            )
        return self.get(account_id)
