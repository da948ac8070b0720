"""Account management: import, look up, hand out an access token, enable, disable, remove."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tokenrefresh.clock import Clock, utcnow
from tokenrefresh.crypto import TokenCipher
from tokenrefresh.errors import AccountNotFound, NoUsableToken
from tokenrefresh.importer import parse_accounts
from tokenrefresh.storage.models import AccountStatus
from tokenrefresh.storage.records import AccountView, AttemptView, NewAccount
from tokenrefresh.storage.repository import Repository

__all__ = ["AccountDetails", "Accounts", "ImportReport"]


@dataclass(frozen=True)
class ImportReport:
    created: int
    updated: int


@dataclass(frozen=True)
class AccountDetails:
    account: AccountView
    attempts: list[AttemptView]


class Accounts:
    """The `accounts` commands' service."""

    def __init__(self, repository: Repository, clock: Clock = utcnow) -> None:
        self._repository = repository
        self._clock = clock

    def import_lines(self, lines: Iterable[str], cipher: TokenCipher) -> ImportReport:
        """Parse every line first, then upsert all of them in one transaction."""
        parsed = parse_accounts(lines, self._clock())
        created, updated = self._repository.import_accounts(
            [
                NewAccount(
                    open_id=account.open_id,
                    label=account.label,
                    access_token_ciphertext=cipher.encrypt(account.access_token),
                    refresh_token_ciphertext=cipher.encrypt(account.refresh_token),
                    access_expires_at=account.access_expires_at,
                    refresh_expires_at=account.refresh_expires_at,
                    scope=account.scope,
                )
                for account in parsed
            ]
        )
        return ImportReport(created=created, updated=updated)

    def list(self, status: AccountStatus | None = None) -> list[AccountView]:
        return self._repository.list_accounts(status.value if status else None)

    def get(self, account_id: int | None = None, open_id: str | None = None) -> AccountView:
        if open_id is not None:
            found = self._repository.find_account(open_id)
            if found is None:
                raise AccountNotFound(f"no account with open_id {open_id!r}")
            return found
        assert account_id is not None
        account = self._repository.get_account(account_id)
        if account is None:
            raise AccountNotFound(f"no account with id {account_id}")
        return account

    def details(self, account_id: int, attempts: int) -> AccountDetails:
        account = self.get(account_id)
        return AccountDetails(account, self._repository.recent_attempts(account_id, attempts))

    def access_token(self, account: AccountView, cipher: TokenCipher) -> str:
        """The account's current access token, if it can be used right now."""
        name = f"account {account.id} ({account.open_id})"
        if account.status == AccountStatus.EXPIRED:
            raise NoUsableToken(f"{name} is expired: its user must reconnect the TikTok account")
        if account.status == AccountStatus.DISABLED:
            raise NoUsableToken(f"{name} is disabled")
        if account.access_expires_at <= self._clock():
            raise NoUsableToken(
                f"{name}: the access token expired at "
                f"{account.access_expires_at.isoformat(timespec='seconds')}; "
                "run `tokenrefresh refresh` (is cron running it?)"
            )
        ciphertext = self._repository.access_token_ciphertext(account.id)
        if ciphertext is None:
            raise NoUsableToken(f"{name} has no stored access token")
        return cipher.decrypt(ciphertext)

    def remove(self, account_id: int) -> None:
        if not self._repository.remove_account(account_id):
            raise AccountNotFound(f"no account with id {account_id}")

    def set_enabled(self, account_id: int, enabled: bool) -> AccountView:
        status = AccountStatus.ACTIVE if enabled else AccountStatus.DISABLED
        if not self._repository.set_status(account_id, status):
            raise AccountNotFound(f"no account with id {account_id}")
        return self.get(account_id)
