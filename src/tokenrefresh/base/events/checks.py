"""The shape of the delivery settings, checked without importing requests or Apprise:
`Settings` checks them on load, `WebhookSender` and `Notifier` on construction. Each
problem is described in words that repeat nothing of the value (it is a secret)."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import secrets
from urllib.parse import urlsplit

__all__ = [
    "SECRET_PREFIX",
    "new_webhook_secret",
    "notify_url_list",
    "notify_urls_problem",
    "webhook_secret_key",
    "webhook_secret_problem",
    "webhook_url_problem",
]

NEW_SECRET_BYTES = 32  # what `tokenrefresh events secret` makes
SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret
MIN_SECRET_BYTES = 24  # the Standard Webhooks spec: between 24 and 64 bytes
MAX_SECRET_BYTES = 64
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_URL_SEPARATORS = re.compile(r"[\s,]+")


def webhook_url_problem(url: str) -> str | None:
    """What is wrong with a webhook URL; None if it is https://, or http:// to loopback."""
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("https", "http") or not hostname:
        return "must be an https:// URL with a host name"
    if parts.scheme == "http" and not is_loopback_host(hostname):
        return (
            "must use https:// (plain http:// is only allowed to a loopback host: "
            "127.0.0.1, ::1, localhost)"
        )
    if parts.fragment:
        return "must not carry a #fragment"
    return None


def webhook_secret_problem(secret: str) -> str | None:
    """What is wrong with a Standard Webhooks secret (`whsec_` + base64 of 24 to 64 bytes)."""
    key = webhook_secret_key(secret)
    if isinstance(key, bytes):
        return None
    return f"{key} (create one with `tokenrefresh events secret`)"


def new_webhook_secret() -> str:
    """A new Standard Webhooks secret: `whsec_` + standard base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(NEW_SECRET_BYTES)).decode("ascii")


def webhook_secret_key(secret: str) -> bytes | str:
    """The secret's key bytes, or (a str) what is wrong with it."""
    if not secret.startswith(SECRET_PREFIX):
        return f"must start with {SECRET_PREFIX!r} followed by base64 (a Standard Webhooks secret)"
    encoded = secret[len(SECRET_PREFIX) :]
    if not _BASE64.fullmatch(encoded):
        return f"must be {SECRET_PREFIX!r} followed by standard base64 (A-Z a-z 0-9 + /)"
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        return f"must be {SECRET_PREFIX!r} followed by valid base64"
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        return f"must encode between {MIN_SECRET_BYTES} and {MAX_SECRET_BYTES} bytes"
    return key


def notify_url_list(urls: str) -> list[str]:
    """Apprise URLs separated by commas or white space."""
    return [url for url in _URL_SEPARATORS.split(urls.strip()) if url]


def notify_urls_problem(urls: str) -> str | None:
    """What is wrong with the list's shape (Apprise itself judges each URL when it is used)."""
    entries = notify_url_list(urls)
    if not entries:
        return "holds no URL"
    for position, url in enumerate(entries, start=1):
        scheme, separator, rest = url.partition("://")
        if not separator or not rest or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
            return f"URL #{position} is not a URL (scheme://...)"
    return None


def is_loopback_host(host: str) -> bool:
    """True for localhost and addresses in 127.0.0.0/8 or ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
