"""The stand-in's consent state: authorization codes (single use, short-lived, bound to a
redirect URI and an optional PKCE challenge) and revoked access tokens.

A helper of ``standin.py``, kept apart to keep that module readable. Not thread-safe by
itself: :class:`TikTokStandIn` calls every method with its lock held, so each decision (is
this code still pending? spend it) is atomic. Standard library only.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = ["CODE_TTL", "Authorization", "CodeRejected", "ConsentBook", "challenge_of"]

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
