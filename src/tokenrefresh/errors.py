"""The one exception hierarchy: every error the CLI shows, with the exit code it maps to.

Messages are written for the operator who reads them in a cron mail: they name the
problem and, where there is one, the fix. They never contain a token or a secret.
"""

from __future__ import annotations

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILURES",
    "EXIT_LOCKED",
    "EXIT_OK",
    "EXIT_USAGE",
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


class TokenRefreshError(Exception):
    """Base of every error tokenrefresh reports; carries its exit code."""

    exit_code: int = EXIT_FAILURES

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or type(self).__name__).strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class UsageError(TokenRefreshError):
    """The command line or its input is not valid."""

    exit_code = EXIT_USAGE


class InvalidArgument(UsageError, ValueError):
    """An argument of a library call is out of range (also a ValueError)."""


class AccountNotFound(UsageError):
    """No account has that id or open_id."""


class ImportFileError(UsageError):
    """The import file is not valid; nothing was imported."""


class ConfigError(TokenRefreshError):
    """The configuration is missing or wrong."""

    exit_code = EXIT_CONFIG


# The library's name for it (`from tokenrefresh import ConfigurationError`).
ConfigurationError = ConfigError


class DecryptionError(ConfigError):
    """A stored token cannot be decrypted with any key in TOKENREFRESH_ENCRYPTION_KEYS."""


class SchemaNotCurrent(ConfigError):
    """The database schema is not at the current revision: run `tokenrefresh db upgrade`."""


class ClientRejected(ConfigError):
    """TikTok rejected the app's own credentials (TIKTOK_CLIENT_KEY / TIKTOK_CLIENT_SECRET)."""


class LockHeld(TokenRefreshError):
    """Another run holds the lock; this one did nothing."""

    exit_code = EXIT_LOCKED


class NoUsableToken(TokenRefreshError):
    """The account has no access token that can be used now."""


class MinValidUnreachable(TokenRefreshError):
    """TikTok's access tokens do not last as long as `min_valid` asks (or its newest one came
    without a usable lifetime): refreshing again would only rotate the account for nothing.
    Ask with a smaller `min_valid`; not a failure that passes by itself."""

    exit_code = EXIT_USAGE


class ReconnectNeeded(NoUsableToken):
    """The account's user must connect the TikTok account again: TikTok rejected its refresh
    token, or it expired, or the account was revoked, disabled or has no tokens."""


class TemporarilyUnavailable(TokenRefreshError):
    """No fresh token now, for a reason that may pass: TikTok or the database failed, or
    another process is still refreshing the account. Try again later."""


class DatabaseError(TemporarilyUnavailable):
    """The database could not be reached or failed during the command."""


class RefreshesSuspended(DatabaseError):
    """A new token pair could not be stored, so this store refuses refreshes (without calling
    TikTok) until the database takes writes again; tokens still valid are handed out."""
