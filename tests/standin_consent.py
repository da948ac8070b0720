"""The stand-in's consent state: authorization codes (single use, short-lived, bound to a
redirect URI and an optional PKCE challenge) and revoked access tokens; and its consent
page (``GET /v2/auth/authorize/``), which says yes at once, for scripts: a 302 to the
redirect URI with a fresh code and the state.

A helper of ``standin.py``, kept apart to keep that module readable. Not thread-safe by
itself: :class:`TikTokStandIn` calls every method with its lock held, so each decision (is
this code still pending? spend it) is atomic. Standard library only.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs, quote, urlencode, urlsplit

__all__ = [
    "AUTHORIZE_PATH",
    "CODE_TTL",
    "DEMO_OPEN_ID",
    "Authorization",
    "CodeRejected",
    "ConsentBook",
    "ConsentRefused",
    "ConsentRequest",
    "challenge_of",
    "read_consent_request",
    "redirect_location",
]

AUTHORIZE_PATH = "/v2/auth/authorize/"
DEMO_OPEN_ID = "demo-new-creator"  # who consents on the consent page, unless open_id= says

CODE_TTL = 600.0  # seconds an authorization code can be exchanged (TikTok: short-lived)
ChallengeEncoding = Literal["hex", "base64url"]

# The error_description of each way an exchange fails (error is always invalid_grant).
UNKNOWN_CODE = "Authorization code is invalid."
USED_CODE = "Authorization code has already been used."
EXPIRED_CODE = "Authorization code has expired."
WRONG_REDIRECT = "redirect_uri does not match the one of the authorization request."
MISSING_VERIFIER = "Code verifier is required."
WRONG_VERIFIER = "Code verifier or code challenge is invalid."


def challenge_of(verifier: str, encoding: ChallengeEncoding) -> str:
    """The S256 challenge of a verifier, as hex (TikTok desktop) or base64url (RFC 7636)."""
    digest = hashlib.sha256(verifier.encode("utf-8", "surrogatepass")).digest()
    if encoding == "hex":
        return digest.hex()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class Authorization:
    """What the user consented to, as one code remembers it."""

    open_id: str
    redirect_uri: str
    scope: str
    challenge: str | None
    encoding: ChallengeEncoding
    issued_at: float  # time.monotonic()


class CodeRejected(Exception):
    """An exchange that fails: ``description`` is the invalid_grant's error_description."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class ConsentBook:
    """Codes issued, pending and spent; access tokens revoked; counts of what happened."""

    def __init__(self) -> None:
        self._pending: dict[str, Authorization] = {}
        self._owner: dict[str, str] = {}  # every code ever issued -> open_id
        self.codes: list[str] = []  # every code ever issued, in order
        self.exchanges: collections.Counter[str] = collections.Counter()  # answered 200
        self.lost_exchanges: collections.Counter[str] = collections.Counter()
        self.revocations: collections.Counter[str] = collections.Counter()  # answered 200
        self._revoked_access: set[str] = set()

    def authorize(
        self,
        open_id: str,
        *,
        redirect_uri: str,
        scope: str,
        challenge: str | None,
        encoding: ChallengeEncoding,
        now: float,
    ) -> str:
        """A new single-use code; with ``*`` and ``!`` in it, as TikTok's codes have, so that
        a client that does not form-encode it sends something else."""
        code = f"{secrets.token_urlsafe(24)}*!{secrets.token_hex(6)}"
        self._pending[code] = Authorization(open_id, redirect_uri, scope, challenge, encoding, now)
        self._owner[code] = open_id
        self.codes.append(code)
        return code

    def owner_of(self, code: str | None) -> str | None:
        return self._owner.get(code) if code is not None else None

    def is_pending(self, code: str) -> bool:
        return code in self._pending

    def spend(
        self, code: str, *, redirect_uri: str | None, verifier: str | None, now: float, ttl: float
    ) -> Authorization:
        """The code's authorization, if this exchange may have it; CodeRejected otherwise.
        Any attempt at a pending code spends it, the failed ones too."""
        authorization = self._pending.pop(code, None)
        if authorization is None:
            raise CodeRejected(USED_CODE if code in self._owner else UNKNOWN_CODE)
        if now - authorization.issued_at >= ttl:
            raise CodeRejected(EXPIRED_CODE)
        if redirect_uri != authorization.redirect_uri:
            raise CodeRejected(WRONG_REDIRECT)
        if authorization.challenge is not None:
            if not verifier:
                raise CodeRejected(MISSING_VERIFIER)
            if challenge_of(verifier, authorization.encoding) != authorization.challenge:
                raise CodeRejected(WRONG_VERIFIER)
        return authorization

    def revoke_access(self, tokens: Iterable[str]) -> None:
        self._revoked_access.update(tokens)

    def is_revoked(self, access_token: str) -> bool:
        return access_token in self._revoked_access

    @property
    def revoked_access(self) -> list[str]:
        return sorted(self._revoked_access)


# -- the consent page ---------------------------------------------------------------------

_HEX_CHALLENGE = re.compile(r"[0-9a-f]{64}")  # TikTok desktop: hex of SHA-256
_BASE64URL_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")  # RFC 7636: base64url, no padding
_OPEN_ID = re.compile(r"[!-~]{1,255}")


class ConsentRefused(Exception):
    """A consent request the page refuses (400, nobody redirected): the reason why."""


@dataclass(frozen=True)
class ConsentRequest:
    """A consent request as the page reads it: who says yes to what, and where to."""

    open_id: str
    redirect_uri: str
    scope: str
    state: str
    challenge: str | None
    encoding: ChallengeEncoding


def read_consent_request(query: str, *, client_key: str, default_scope: str) -> ConsentRequest:
    """The request in a consent URL's query, as ``accounts authorize-url`` makes it, or
    ConsentRefused naming what is wrong. ``open_id`` (not TikTok's) picks the demo user who
    consents; a challenge (with ``code_challenge_method=S256``) is hex or base64url."""
    params = parse_qs(query, keep_blank_values=True)
    if any(len(values) > 1 for values in params.values()):
        raise ConsentRefused("a parameter is given twice")
    get = {name: values[0] for name, values in params.items()}.get
    if get("client_key") != client_key:
        raise ConsentRefused(f"client_key is not the stand-in's app ({client_key})")
    if get("response_type") != "code":
        raise ConsentRefused("response_type must be code")
    redirect_uri = get("redirect_uri") or ""
    parts = urlsplit(redirect_uri)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
        raise ConsentRefused("redirect_uri must be an absolute http(s) URL without a fragment")
    state = get("state")
    if not state:
        raise ConsentRefused("state is missing")
    open_id = get("open_id") or DEMO_OPEN_ID
    if not _OPEN_ID.fullmatch(open_id):
        raise ConsentRefused("open_id must be 1 to 255 visible ASCII characters")
    challenge, method = get("code_challenge"), get("code_challenge_method")
    encoding: ChallengeEncoding = "hex"
    if challenge is None and method is not None:
        raise ConsentRefused("code_challenge_method without a code_challenge")
    if challenge is not None:
        if method != "S256":
            raise ConsentRefused("code_challenge_method must be S256")
        if _BASE64URL_CHALLENGE.fullmatch(challenge):
            encoding = "base64url"
        elif not _HEX_CHALLENGE.fullmatch(challenge):
            raise ConsentRefused("code_challenge is not a SHA-256 challenge (hex or base64url)")
    scope = get("scope") or default_scope
    return ConsentRequest(open_id, redirect_uri, scope, state, challenge, encoding)


def redirect_location(request: ConsentRequest, code: str) -> str:
    """Where the user's browser goes after saying yes: the redirect URI with the code (its
    ``*`` and ``!`` percent-encoded), the state and the scopes granted."""
    query = urlencode(
        [("code", code), ("scopes", request.scope), ("state", request.state)], quote_via=quote
    )
    separator = "&" if "?" in request.redirect_uri else "?"
    return request.redirect_uri + separator + query
