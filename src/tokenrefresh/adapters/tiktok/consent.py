"""The first half of connecting an account: the consent URL the user opens, and the values
that go with it (state against CSRF; a PKCE verifier and its challenge for desktop apps).

Pure functions, no HTTP. The second half, exchanging the code TikTok sends to the redirect
URI, is `TikTokClient.exchange_code`; what goes into it (the code, the verifier, the
redirect URI, all typed or pasted by someone) is checked here first, since a call spends
the code whatever comes of it.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
import secrets
import string
from collections.abc import Sequence
from typing import Literal
from urllib.parse import quote, unquote, urlencode, urlsplit

from tokenrefresh.base.settings import DEFAULT_AUTHORIZE_URL

__all__ = [
    "AUTHORIZE_URL",
    "MAX_CODE_LENGTH",
    "MAX_REDIRECT_URI_LENGTH",
    "ChallengeEncoding",
    "authorize_url",
    "check_code",
    "check_code_verifier",
    "check_redirect_uri",
    "code_challenge",
    "new_code_verifier",
    "new_state",
]

# TikTok's consent page; TIKTOK_AUTHORIZE_URL (Settings.authorize_url) can name another,
# such as the stand-in of examples/standin.py.
AUTHORIZE_URL = DEFAULT_AUTHORIZE_URL
ChallengeEncoding = Literal["hex", "base64url"]

VERIFIER_LENGTH = 64
# RFC 7636 section 4.1: unreserved characters, 43 to 128 of them.
_UNRESERVED = string.ascii_letters + string.digits + "-._~"
_VERIFIER_SHAPE = re.compile(r"[A-Za-z0-9._~-]{43,128}")
_LOOPBACK_NAMES = frozenset({"localhost"})
# TikTok's codes are opaque URL-safe text (`*` and `!` among its characters); 1024 leaves
# ample room over the codes seen, and the limit keeps a pasted file from being sent.
MAX_CODE_LENGTH = 1024
_CODE_SHAPE = re.compile(r"[!-~]+")  # visible ASCII: no space, no control character
_NOT_PERCENT_ENCODING = re.compile(r"%(?![0-9A-Fa-f]{2})")
MAX_REDIRECT_URI_LENGTH = 2048


def new_state() -> str:
    """A fresh, unguessable `state` (256 bits, URL-safe): compare it with the one that comes
    back to the redirect URI before exchanging the code."""
    return secrets.token_urlsafe(32)


def new_code_verifier() -> str:
    """A fresh PKCE code verifier: 64 characters from RFC 7636's unreserved set."""
    return "".join(secrets.choice(_UNRESERVED) for _ in range(VERIFIER_LENGTH))


def code_challenge(verifier: str, encoding: ChallengeEncoding = "hex") -> str:
    """The S256 challenge of a PKCE verifier: SHA-256 of its ASCII bytes, encoded.

    Hex is the default because TikTok's Login Kit for Desktop page shows the challenge as
    the hex digest of SHA-256, and integrations report that TikTok's desktop flow rejects a
    base64url challenge ("Code verifier or code challenge is invalid"). That contradicts
    RFC 7636, which says base64url without padding ("base64url" here), and TikTok may one
    day follow the RFC; which one TikTok accepts is not settled, so both are offered, and
    the one used must be the one the stand-in or TikTok is tested with.
    """
    check_code_verifier(verifier)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    if encoding == "hex":
        return digest.hex()
    if encoding == "base64url":
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    raise ValueError(f"unknown code challenge encoding {encoding!r}: use 'hex' or 'base64url'")


def check_code_verifier(verifier: str) -> None:
    """ValueError unless `verifier` is a PKCE code verifier as RFC 7636 (4.1) defines it."""
    if not isinstance(verifier, str) or not _VERIFIER_SHAPE.fullmatch(verifier):
        raise ValueError(
            "a PKCE code verifier is 43 to 128 characters of A-Z, a-z, 0-9 and - . _ ~"
        )


def check_code(code: str) -> str:
    """The authorization code to send, or ValueError naming what is wrong (never the code).

    Whitespace around it is dropped, and a code copied from the redirect URL, still
    percent-encoded (`%2A` for `*`), is decoded once, as TikTok asks. What is left must be
    1 to 1024 characters of visible ASCII: a space, a control character or anything else
    cannot be part of one of TikTok's codes, and is refused before any call.
    """
    if not isinstance(code, str):
        raise ValueError("the authorization code must be text")
    code = code.strip()
    if not code:
        raise ValueError("the authorization code is empty")
    if len(code) > 3 * MAX_CODE_LENGTH:  # too long even if every character were encoded
        raise ValueError(f"the authorization code is longer than {MAX_CODE_LENGTH} characters")
    if "%" in code:
        if _NOT_PERCENT_ENCODING.search(code):
            raise ValueError("the authorization code has a % that is not percent-encoding (%XX)")
        try:
            code = unquote(code, errors="strict")
        except UnicodeDecodeError:
            raise ValueError("the authorization code's percent-encoding is not UTF-8") from None
    if len(code) > MAX_CODE_LENGTH:
        raise ValueError(f"the authorization code is longer than {MAX_CODE_LENGTH} characters")
    if not _CODE_SHAPE.fullmatch(code):
        raise ValueError(
            "the authorization code holds a space, a control character or a character "
            "outside ASCII: TikTok's codes are visible ASCII only"
        )
    return code


def check_redirect_uri(uri: str) -> None:
    """ValueError unless `uri` can be a redirect URI: absolute https, or http on a loopback
    host (127.0.0.1, ::1, localhost) with a port, as TikTok's desktop apps use; never a
    fragment, nor a user name or password, nor a space or control character (which
    `urlsplit` would silently drop), and at most 2048 characters."""
    if not isinstance(uri, str):
        raise ValueError("the redirect URI must be text")
    if len(uri) > MAX_REDIRECT_URI_LENGTH:
        raise ValueError(f"the redirect URI is longer than {MAX_REDIRECT_URI_LENGTH} characters")
    if any(char.isspace() or not char.isprintable() for char in uri):
        raise ValueError("the redirect URI must not contain a space or a control character")
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        raise ValueError("the redirect URI is not a valid URL") from None
    if not parts.hostname:
        raise ValueError("the redirect URI must be an absolute URL with a host")
    if parts.fragment or uri.endswith("#"):
        raise ValueError("the redirect URI must not have a fragment (#...)")
    if parts.username is not None or parts.password is not None:
        raise ValueError("the redirect URI must not carry a user name or password")
    scheme = parts.scheme.lower()
    if scheme == "https":
        return
    if scheme != "http":
        raise ValueError("the redirect URI must use https (or http on a loopback address)")
    if not _is_loopback(parts.hostname):
        raise ValueError("an http redirect URI must be on 127.0.0.1, ::1 or localhost; use https")
    if port is None:
        raise ValueError("an http loopback redirect URI must name a port")


def authorize_url(
    *,
    client_key: str,
    redirect_uri: str,
    scopes: Sequence[str],
    state: str,
    code_challenge: str | None = None,
    base_url: str = AUTHORIZE_URL,
) -> str:
    """The consent URL, at `base_url` (TikTok's page unless told otherwise): client_key,
    response_type=code, scope (comma-joined), redirect_uri and state, plus code_challenge
    and code_challenge_method=S256 when a challenge is given; every value percent-encoded."""
    if isinstance(scopes, str):
        raise ValueError("scopes must be a list of scope names, not one string")
    if not client_key or not state or not base_url:
        raise ValueError("client_key, state and base_url must not be empty")
    if not scopes or any(not scope for scope in scopes):
        raise ValueError("at least one scope is needed, and no scope may be empty")
    if any("," in scope or any(char.isspace() for char in scope) for scope in scopes):
        raise ValueError("a scope name must not contain a comma or whitespace")
    if code_challenge == "":
        raise ValueError("code_challenge must not be empty (leave it out for no PKCE)")
    check_redirect_uri(redirect_uri)
    params = [
        ("client_key", client_key),
        ("response_type", "code"),
        ("scope", ",".join(scopes)),
        ("redirect_uri", redirect_uri),
        ("state", state),
    ]
    if code_challenge is not None:
        params += [("code_challenge", code_challenge), ("code_challenge_method", "S256")]
    separator = "&" if "?" in base_url else "?"
    return base_url + separator + urlencode(params, quote_via=quote)


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address in (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))
