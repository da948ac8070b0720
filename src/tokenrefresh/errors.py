"""The one exception hierarchy: every error the CLI shows, with the exit code it maps to.

Messages are written for the operator who reads them in a cron mail: they name the
problem and, where there is one, the fix. They never contain a token or a secret.
"""

from __future__ import annotations

from typing import TypedDict, Unpack

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILURES",
    "EXIT_LOCKED",
    "EXIT_OK",
    "EXIT_USAGE",
    "RECONNECT_REASONS",
    "AccountNotFound",
    "ClientRejected",
    "ConfigError",
    "ConfigurationError",
    "DatabaseError",
    "DecryptionError",
    "ImportFileError",
    "InvalidArgument",
    "LockHeld",
    "MinValidUnreachable",
    "NoUsableToken",
    "ReconnectNeeded",
    "RefreshesSuspended",
    "SchemaNotCurrent",
    "TemporarilyUnavailable",
    "TokenRefreshError",
    "UsageError",
]

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_LOCKED = 75  # EX_TEMPFAIL from sysexits.h: "try again later"

# ReconnectNeeded's `reason`: why the account's user must connect it again. Stable: apps
# branch on these strings (the README lists them).
RECONNECT_REASONS = frozenset(
    {
        "expired",  # TikTok rejected its refresh token (revoked by its user, or ran out)
        "refresh_token_expired",  # its refresh token is past its expiry here
        "no_refresh_token",  # its tokens were erased (cleanup after it expired)
        "revoked",  # revoked on purpose (`accounts revoke`)
        "disabled",  # excluded by hand: `accounts enable` brings it back, no user needed
        "missing_scope",  # its consent lacks a scope the caller asked for
        "unusable_grant",  # connect: TikTok's answer could not be stored
    }
)


class _ErrorData(TypedDict, total=False):
    """The keyword arguments every TokenRefreshError takes besides its message."""

    reason: str | None
    account_id: int | None
    open_id: str | None


class TokenRefreshError(Exception):
    """Base of every error tokenrefresh reports; carries its exit code.

    And data for an app to act on: `reason`, a short stable machine string (each class has
    its own default; the account errors give the precise one, see REASONS), and the
    account it is about, `account_id` and `open_id` (None where unknown or not about one).
    """

    exit_code: int = EXIT_FAILURES
    reason: str = "error"

    def __init__(
        self,
        message: str | None = None,
        *,
        reason: str | None = None,
        account_id: int | None = None,
        open_id: str | None = None,
    ) -> None:
        super().__init__(message or (self.__doc__ or type(self).__name__).strip())
        if reason is not None:
            self.reason = reason
        self.account_id = account_id
        self.open_id = open_id

    @property
    def message(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple[object, ...]:
        # Pickled (multiprocessing, a task queue) with its data, not only its message.
        return (_rebuilt, (type(self), self.args, self.__dict__))


def _rebuilt(
    cls: type[TokenRefreshError], args: tuple[object, ...], data: dict[str, object]
) -> TokenRefreshError:
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(data)
    return error


class UsageError(TokenRefreshError):
    """The command line or its input is not valid."""

    exit_code = EXIT_USAGE
    reason = "usage"


class InvalidArgument(UsageError, ValueError):
    """An argument of a library call is out of range (also a ValueError)."""

    reason = "invalid_argument"


class AccountNotFound(UsageError):
    """No account has that id or open_id."""

    reason = "not_found"

    @classmethod
    def by_key(cls, account_id: int | None, open_id: str | None) -> AccountNotFound:
        """`no account with id N`, or `with open_id 'X'` when the key is an open_id."""
        which = f"id {account_id}" if open_id is None else f"open_id {open_id!r}"
        return cls(f"no account with {which}", account_id=account_id, open_id=open_id)


class ImportFileError(UsageError):
    """The import file is not valid; nothing was imported."""

    reason = "import_file"


class ConfigurationError(TokenRefreshError):
    """The configuration is missing or wrong."""

    exit_code = EXIT_CONFIG
    reason = "configuration"


# The name the code base has long used; the class (shown in reprs and tracebacks) is
# ConfigurationError, the library's name for it.
ConfigError = ConfigurationError


class DecryptionError(ConfigError):
    """A stored token cannot be decrypted with any key in TOKENREFRESH_ENCRYPTION_KEYS."""

    reason = "decryption"


class SchemaNotCurrent(ConfigError):
    """The database schema is not at the current revision: run `tokenrefresh db upgrade`."""

    reason = "schema_not_current"


class ClientRejected(ConfigError):
    """TikTok rejected the app's own credentials (TIKTOK_CLIENT_KEY / TIKTOK_CLIENT_SECRET)."""

    reason = "client_rejected"


class LockHeld(TokenRefreshError):
    """Another run holds the lock; this one did nothing."""

    exit_code = EXIT_LOCKED
    reason = "locked"


class NoUsableToken(TokenRefreshError):
    """The account has no access token that can be used now."""

    reason = "no_usable_token"


class MinValidUnreachable(TokenRefreshError):
    """TikTok's access tokens do not last as long as `min_valid` asks (or its newest one came
    without a usable lifetime): refreshing again would only rotate the account for nothing.
    Ask with a smaller `min_valid`; not a failure that passes by itself."""

    exit_code = EXIT_USAGE
    reason = "min_valid_unreachable"


class ReconnectNeeded(NoUsableToken):
    """The account's user must connect the TikTok account again: TikTok rejected its refresh
    token, or it expired, or the account was revoked, disabled or has no tokens, or it lacks
    a scope the caller needs (`missing_scopes`). `reason` says which (RECONNECT_REASONS)."""

    reason = "reconnect"

    def __init__(
        self,
        message: str | None = None,
        *,
        missing_scopes: frozenset[str] = frozenset(),
        **data: Unpack[_ErrorData],
    ) -> None:
        super().__init__(message, **data)
        self.missing_scopes = missing_scopes


class TemporarilyUnavailable(TokenRefreshError):
    """No fresh token now, for a reason that may pass: TikTok or the database failed, or
    another process is still refreshing the account. Try again later."""

    reason = "temporarily_unavailable"


class DatabaseError(TemporarilyUnavailable):
    """The database could not be reached or failed during the command."""

    reason = "database"


class RefreshesSuspended(DatabaseError):
    """A new token pair could not be stored, so this store refuses refreshes (without calling
    TikTok) until the database takes writes again; tokens still valid are handed out."""

    reason = "suspended"
