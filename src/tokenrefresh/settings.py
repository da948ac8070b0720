"""Configuration: one frozen Settings object, read from the environment once.

Every variable can also be given as a file through the same name plus `_FILE`
(for secrets mounted by systemd credentials, Docker or Kubernetes). Secrets are never
read from the command line, where `ps` would show them. Errors name the variable.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tokenrefresh.errors import ConfigError

__all__ = [
    "DEFAULT_API_BASE_URL",
    "ClientCredentials",
    "Secret",
    "Settings",
]

DEFAULT_API_BASE_URL = "https://open.tiktokapis.com"

DATABASE_URL = "TOKENREFRESH_DATABASE_URL"
ENCRYPTION_KEYS = "TOKENREFRESH_ENCRYPTION_KEYS"
CLIENT_KEY = "TIKTOK_CLIENT_KEY"
CLIENT_SECRET = "TIKTOK_CLIENT_SECRET"  # noqa: S105 - the variable's name, not a secret
API_BASE_URL = "TIKTOK_API_BASE_URL"
PING_URL = "TOKENREFRESH_PING_URL"
CLEANUP_PING_URL = "TOKENREFRESH_CLEANUP_PING_URL"


class Secret:
    """A string that never shows itself in repr, str, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class ClientCredentials:
    """The TikTok app's client key and secret."""

    client_key: str
    client_secret: Secret


@dataclass(frozen=True)
class Settings:
    """Everything tokenrefresh reads from its environment, validated on load."""

    database_url: Secret | None = None
    encryption_keys: tuple[Secret, ...] = ()
    client_key: str | None = None
    client_secret: Secret | None = None
    api_base_url: str = DEFAULT_API_BASE_URL
    ping_url: Secret | None = None
    cleanup_ping_url: Secret | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        keys_text = _read(env, ENCRYPTION_KEYS)
        database_url = _read(env, DATABASE_URL)
        client_secret = _read(env, CLIENT_SECRET)
        ping_url = _read(env, PING_URL)
        cleanup_ping_url = _read(env, CLEANUP_PING_URL)
        return cls(
            database_url=Secret(database_url) if database_url else None,
            encryption_keys=_parse_keys(keys_text) if keys_text else (),
            client_key=_read(env, CLIENT_KEY),
            client_secret=Secret(client_secret) if client_secret else None,
            api_base_url=_validate_base_url(_read(env, API_BASE_URL) or DEFAULT_API_BASE_URL),
            ping_url=Secret(_validate_ping_url(PING_URL, ping_url)) if ping_url else None,
            cleanup_ping_url=(
                Secret(_validate_ping_url(CLEANUP_PING_URL, cleanup_ping_url))
                if cleanup_ping_url
                else None
            ),
        )

    def require_encryption_keys(self) -> tuple[Secret, ...]:
        if not self.encryption_keys:
            raise ConfigError(
                f"{ENCRYPTION_KEYS} is not set: it must hold one or more Fernet keys, comma "
                "separated (create one with `tokenrefresh keys generate`)"
            )
        return self.encryption_keys

    def require_client_credentials(self) -> ClientCredentials:
        missing = [
            name
            for name, value in ((CLIENT_KEY, self.client_key), (CLIENT_SECRET, self.client_secret))
            if not value
        ]
        if missing:
            raise ConfigError(
                f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: "
                "the TikTok app's credentials are needed to refresh tokens"
            )
        assert self.client_key is not None
        assert self.client_secret is not None
        return ClientCredentials(self.client_key, self.client_secret)


def _read(env: Mapping[str, str], name: str) -> str | None:
    """The value of NAME or the content of the file named by NAME_FILE; empty means unset."""
    direct = env.get(name, "").strip()
    file_name = env.get(f"{name}_FILE", "").strip()
    if direct and file_name:
        raise ConfigError(f"both {name} and {name}_FILE are set: use one of them")
    if not file_name:
        return direct or None
    try:
        content = Path(file_name).read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ConfigError(
            f"cannot read {name}_FILE ({file_name}): {error.strerror or error}"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read {name}_FILE ({file_name}): it is not UTF-8 text") from None
    if not content:
        raise ConfigError(f"{name}_FILE ({file_name}) is empty")
    return content


def _parse_keys(text: str) -> tuple[Secret, ...]:
    """Split the comma separated key list and check each is a Fernet key, by position."""
    keys = [part.strip() for part in text.split(",")]
    for position, key in enumerate(keys, start=1):
        if not key:
            raise ConfigError(f"{ENCRYPTION_KEYS}: key #{position} is empty (stray comma?)")
        try:
            raw = base64.urlsafe_b64decode(key.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raw = b""
        if len(raw) != 32:
            raise ConfigError(
                f"{ENCRYPTION_KEYS}: key #{position} is not a Fernet key (32 url-safe "
                "base64-encoded bytes; create one with `tokenrefresh keys generate`)"
            )
    return tuple(Secret(key) for key in keys)


def is_loopback_host(host: str) -> bool:
    """True for localhost and addresses in 127.0.0.0/8 or ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _validate_base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        # Not repeated in the message: a mistyped URL may carry a password.
        raise ConfigError(f"{API_BASE_URL} must be an https:// URL with a host name")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ConfigError(
            f"{API_BASE_URL}: plain http:// is only allowed for a loopback host "
            f"(127.0.0.1, ::1, localhost), not {parts.hostname!r}; use https://"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(f"{API_BASE_URL} must not carry credentials, a query or a fragment")
    return url.rstrip("/")


def _validate_ping_url(name: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"{name} must be an http:// or https:// URL")
    return url.rstrip("/")
