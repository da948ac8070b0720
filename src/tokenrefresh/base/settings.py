"""Configuration: one frozen Settings object, read from the environment once.

Every variable can also be given as a file through the same name plus `_FILE`
(for secrets mounted by systemd credentials, Docker or Kubernetes). Secrets are never
read from the command line, where `ps` would show them. Errors name the variable, and
every secret read is registered with `scrub`, so that no output shows a fragment of it.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, unquote_plus, urlsplit

from tokenrefresh.base.envfile import read_small_file, shared_with
from tokenrefresh.base.events.checks import (
    notify_url_list,
    notify_urls_problem,
    webhook_secret_problem,
    webhook_url_problem,
)
from tokenrefresh.base.scrub import register_secret
from tokenrefresh.errors import ConfigError

__all__ = [
    "DEFAULT_API_BASE_URL",
    "DEFAULT_AUTHORIZE_URL",
    "SECRET_VARIABLES",
    "ClientCredentials",
    "Secret",
    "Settings",
    "basic_auth_secrets",
    "database_url_secrets",
    "url_authority",
    "validate_url",
]

log = logging.getLogger("tokenrefresh.settings")  # the name logs have always shown

DEFAULT_API_BASE_URL = "https://open.tiktokapis.com"
DEFAULT_AUTHORIZE_URL = "https://www.tiktok.com/v2/auth/authorize/"

DATABASE_URL = "TOKENREFRESH_DATABASE_URL"
ENCRYPTION_KEYS = "TOKENREFRESH_ENCRYPTION_KEYS"
CLIENT_KEY = "TIKTOK_CLIENT_KEY"
CLIENT_SECRET = "TIKTOK_CLIENT_SECRET"  # noqa: S105 - the variable's name, not a secret
API_BASE_URL = "TIKTOK_API_BASE_URL"
AUTHORIZE_URL = "TIKTOK_AUTHORIZE_URL"  # the consent page (a local stand-in's, to try it)
PING_URL = "TOKENREFRESH_PING_URL"
CLEANUP_PING_URL = "TOKENREFRESH_CLEANUP_PING_URL"
WEBHOOK_SECRET = "TOKENREFRESH_WEBHOOK_SECRET"  # noqa: S105 - the variable's name
WEBHOOK_URL = "TOKENREFRESH_WEBHOOK_URL"
NOTIFY_URLS = "TOKENREFRESH_NOTIFY_URLS"

# The variables whose value is a secret: their NAME_FILE should be private (0600).
SECRET_VARIABLES = frozenset(
    {DATABASE_URL, ENCRYPTION_KEYS, CLIENT_SECRET, PING_URL, CLEANUP_PING_URL}
    | {WEBHOOK_SECRET, WEBHOOK_URL, NOTIFY_URLS}
)

_KEY_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}=")  # 32 bytes, url-safe base64, padded
_KEY_SEPARATOR = re.compile(r"[\s;]")  # what people put between keys instead of a comma
_NOT_A_FERNET_KEY = (
    "is not a Fernet key (32 url-safe base64-encoded bytes; create one with "
    "`tokenrefresh keys generate`)"
)
_NOT_SEPARATED = (
    "holds white space or another separator: keys are separated by commas "
    "(spaces around a comma are fine)"
)


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
    # Where the keys came from, for errors: the variable, or NAME_FILE and its path.
    encryption_keys_source: str = ENCRYPTION_KEYS
    client_key: str | None = None
    client_secret: Secret | None = None
    api_base_url: str = DEFAULT_API_BASE_URL
    authorize_url: str = DEFAULT_AUTHORIZE_URL
    ping_url: Secret | None = None
    cleanup_ping_url: Secret | None = None
    webhook_url: Secret | None = None
    webhook_secret: Secret | None = None
    notify_urls: Secret | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and check every variable; each secret is masked in all output from then on."""
        env = os.environ if environ is None else environ
        keys_text = _read_secret(env, ENCRYPTION_KEYS)
        database_url = _read_secret(env, DATABASE_URL)
        client_secret = _read_secret(env, CLIENT_SECRET)
        ping_url = _read_secret(env, PING_URL)
        cleanup_ping_url = _read_secret(env, CLEANUP_PING_URL)
        webhook_url, webhook_secret = _read_webhook(env)
        notify_urls = _read_secret(env, NOTIFY_URLS)
        if notify_urls and (problem := notify_urls_problem(notify_urls)):
            raise ConfigError(f"{NOTIFY_URLS} {problem}")
        return cls(
            database_url=Secret(database_url) if database_url else None,
            encryption_keys=_parse_keys(keys_text) if keys_text else (),
            encryption_keys_source=_source(env, ENCRYPTION_KEYS),
            client_key=_read(env, CLIENT_KEY),
            client_secret=Secret(client_secret) if client_secret else None,
            api_base_url=_validate_base_url(_read(env, API_BASE_URL) or DEFAULT_API_BASE_URL),
            authorize_url=validate_url(
                AUTHORIZE_URL, _read(env, AUTHORIZE_URL) or DEFAULT_AUTHORIZE_URL
            ),
            ping_url=Secret(_validate_ping_url(PING_URL, ping_url)) if ping_url else None,
            cleanup_ping_url=(
                Secret(_validate_ping_url(CLEANUP_PING_URL, cleanup_ping_url))
                if cleanup_ping_url
                else None
            ),
            webhook_url=Secret(webhook_url) if webhook_url else None,
            webhook_secret=Secret(webhook_secret) if webhook_secret else None,
            notify_urls=Secret(notify_urls) if notify_urls else None,
        )

    @classmethod
    def database_from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Only the database URL (NAME or NAME_FILE): to record a run that the rest of the
        configuration stopped."""
        env = os.environ if environ is None else environ
        database_url = _read_secret(env, DATABASE_URL)
        return cls(database_url=Secret(database_url) if database_url else None)

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


def _source(env: Mapping[str, str], name: str) -> str:
    """Where NAME's value comes from, as errors name it: `NAME`, or `NAME_FILE (path)`."""
    file_name = env.get(f"{name}_FILE", "").strip()
    return f"{name}_FILE ({file_name})" if file_name else name


def _read(env: Mapping[str, str], name: str) -> str | None:
    """The value of NAME or the content of the file named by NAME_FILE; empty means unset."""
    direct = env.get(name, "").strip()
    file_name = env.get(f"{name}_FILE", "").strip()
    if direct and file_name:
        raise ConfigError(f"both {name} and {name}_FILE are set: use one of them")
    if not file_name:
        return direct or None
    data, status = read_small_file(f"{name}_FILE", file_name)
    try:
        content = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read {name}_FILE ({file_name}): it is not UTF-8 text") from None
    if not content:
        raise ConfigError(f"{name}_FILE ({file_name}) is empty")
    if name in SECRET_VARIABLES:
        _warn_if_not_private(name, file_name, status)
    return content


def _read_secret(env: Mapping[str, str], name: str) -> str | None:
    """`_read`, and the secret parts of the value registered with `scrub` before any check."""
    value = _read(env, name)
    if value:
        register_secret(*_secret_parts(name, value))
    return value


def _secret_parts(name: str, value: str) -> tuple[str, ...]:
    """What of a secret variable's value must never be shown (a URL's host may be)."""
    if name == DATABASE_URL:
        return database_url_secrets(value)
    if name == ENCRYPTION_KEYS:
        return tuple(re.split(r"[\s,;]+", value))
    if name == NOTIFY_URLS:
        urls = notify_url_list(value)
        return (value, *urls, *(pair for url in urls for pair in basic_auth_secrets(url)))
    if name in (WEBHOOK_URL, PING_URL, CLEANUP_PING_URL):
        return (value, *basic_auth_secrets(value))
    return (value,)


def _read_webhook(env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The webhook URL and secret: both or neither, each checked (named, never repeated)."""
    url = _read_secret(env, WEBHOOK_URL)
    secret = _read_secret(env, WEBHOOK_SECRET)
    if bool(url) != bool(secret):
        given, missing = (WEBHOOK_URL, WEBHOOK_SECRET) if url else (WEBHOOK_SECRET, WEBHOOK_URL)
        raise ConfigError(
            f"{given} is set but {missing} is not: webhooks need both {WEBHOOK_URL} and "
            f"{WEBHOOK_SECRET} (or neither)"
        )
    if url and (problem := webhook_url_problem(url)):
        raise ConfigError(f"{WEBHOOK_URL} {problem}")
    if secret and (problem := webhook_secret_problem(secret)):
        raise ConfigError(f"{WEBHOOK_SECRET} {problem}")
    return url, secret


def _warn_if_not_private(name: str, file_name: str, status: os.stat_result) -> None:
    """A warning, not an error: Kubernetes mounts Secrets 0644 unless told otherwise. The
    rule (envfile.shared_with): others' bits, or group bits of a group we are not in.

    `status` is the opened file's own (a symlink's target, as Kubernetes mounts are)."""
    if who := shared_with(status):
        log.warning(
            "%s_FILE (%s) can be read or written by %s (mode %04o): "
            "it holds a secret; chmod 600 %s",
            name,
            file_name,
            who,
            stat.S_IMODE(status.st_mode),
            file_name,
        )


def _parse_keys(text: str) -> tuple[Secret, ...]:
    """Split the comma separated key list and check each key; errors give its position only."""
    keys = [part.strip(" \t") for part in text.split(",")]
    for position, key in enumerate(keys, start=1):
        problem = _key_problem(key)
        if problem:
            raise ConfigError(f"{ENCRYPTION_KEYS}: key #{position} {problem}")
    return tuple(Secret(key) for key in keys)


def _key_problem(key: str) -> str | None:
    """What is wrong with one Fernet key, in words that repeat nothing of it; None if fine.

    Strict: base64 decoding alone would silently drop stray characters (`+`, `/`, spaces).
    """
    if not key:
        return "is empty (stray comma?)"
    if _KEY_SEPARATOR.search(key):
        return _NOT_SEPARATED
    if not _KEY_SHAPE.fullmatch(key) or len(base64.urlsafe_b64decode(key)) != 32:
        return _NOT_A_FERNET_KEY
    return None


# ----------------------------------------------------------------------------- database URLs

_USERINFO = re.compile(r"(?P<user>[^:/]*)(?::(?P<password>[^@]*))?@")
_QUERY_PASSWORD = re.compile(r"(?:^|[?&;\s])(?:ssl)?password=([^&#\s]*)", re.IGNORECASE)


def url_authority(url: str) -> str:
    """The `user:password@host:port` of a URL, read as SQLAlchemy reads it.

    The password runs to an `@` and may hold `/`, `?` or `#`; the host part may not.
    """
    rest = url.partition("://")[2]
    userinfo = _USERINFO.match(rest)
    start = userinfo.end() if userinfo else 0
    host_end = re.search(r"[/?#]|$", rest[start:])
    assert host_end is not None  # `$` always matches
    return rest[: start + host_end.start()]


def database_url_secrets(url: str) -> tuple[str, ...]:
    """Every form of a database URL's password that a message could repeat.

    The password as SQLAlchemy reads it (decoded) and as written; with an unencoded `@`,
    all between `user:` and the authority's last `@`; `password=` and `sslpassword=` in the
    query, raw and decoded.
    """
    found = [*_userinfo_passwords(url), *_sqlalchemy_password(url)]
    for raw in _QUERY_PASSWORD.findall(url):
        found += [raw, unquote(raw), unquote_plus(raw)]
    return tuple(dict.fromkeys(value for value in found if value))


def basic_auth_secrets(url: str) -> tuple[str, ...]:
    """The `user:password` a URL's userinfo is sent as (HTTP Basic: base64 of it), decoded
    as requests and Apprise decode it, and as written; () for a URL without userinfo.
    Registered, they are masked in their base64 forms too (see `scrub`)."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return ()
    userinfo, at, _host = netloc.rpartition("@")
    if not at or not userinfo:
        return ()
    user, _colon, password = userinfo.partition(":")
    return tuple(dict.fromkeys([userinfo, f"{unquote(user)}:{unquote(password)}"]))


def _userinfo_passwords(url: str) -> list[str]:
    """The password as written: up to the first `@`, and up to the authority's last `@`."""
    found: list[str] = []
    first = _USERINFO.match(url.partition("://")[2])
    if first is not None and first["password"]:
        found += [first["password"], unquote(first["password"])]
    userinfo, at, _host = url_authority(url).rpartition("@")
    if at and ":" in userinfo:
        written = userinfo.partition(":")[2]
        found += [written, unquote(written)]
    return found


def _sqlalchemy_password(url: str) -> list[str]:
    """The password SQLAlchemy will hand to the driver, if it can read the URL at all."""
    if "@" not in url:
        return []  # SQLAlchemy reads a password only before an `@`; no need to import it
    from sqlalchemy.engine import make_url  # only when a database URL is configured
    from sqlalchemy.exc import ArgumentError

    try:
        password = make_url(url).password
    except (ArgumentError, ValueError, TypeError):
        return []
    return [str(password)] if password else []


def is_loopback_host(host: str) -> bool:
    """True for localhost and addresses in 127.0.0.0/8 or ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_HOST_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


def _validate_base_url(url: str) -> str:
    """A URL every call can use, or ConfigError before any run: a host and port that cannot
    be used would otherwise fail (and back off) every account, one by one."""
    return validate_url(API_BASE_URL, url).rstrip("/")


def validate_url(name: str, url: str) -> str:
    """`url` as given if it is https (http for a loopback host) with a usable host and port
    and no credentials, query or fragment; ConfigError naming the variable otherwise."""
    try:
        parts = urlsplit(url)
    except ValueError:
        # Not repeated in the message: a mistyped URL may carry a password.
        raise ConfigError(
            f"{name} is not a valid URL: an IPv6 address stands in brackets, "
            "as in http://[::1]:8080"
        ) from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"{name} must be an https:// URL with a host name")
    if not _is_host(parts.hostname):
        raise ConfigError(f"{name}: the host is not a valid host name or IP address")
    if _port(parts) == 0:
        raise ConfigError(f"{name}: the port must be a number from 1 to 65535")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ConfigError(
            f"{name}: plain http:// is only allowed for a loopback host "
            f"(127.0.0.1, ::1, localhost), not {parts.hostname!r}; use https://"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(f"{name} must not carry credentials, a query or a fragment")
    return url


def _port(parts: SplitResult) -> int | None:
    """The URL's port; 0 for one out of range or not a number (None: the default)."""
    try:
        return parts.port
    except ValueError:
        return 0


def _is_host(host: str) -> bool:
    """An IP address, or a DNS name of letters, digits and hyphens (IDNs as xn--)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        name = host.removesuffix(".")
        return 0 < len(name) <= 253 and all(map(_HOST_LABEL.fullmatch, name.split(".")))
    return True


def _validate_ping_url(name: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"{name} must be an http:// or https:// URL")
    return url.rstrip("/")
