"""TokenCipher: tokens at rest, encrypted with Fernet; nothing else touches cryptography.

The first key encrypts, every key decrypts (MultiFernet), so a new key can be put first,
`tokenrefresh keys rotate` re-encrypts every token with it, and the old key can go.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from tokenrefresh.base.settings import ENCRYPTION_KEYS, Secret
from tokenrefresh.errors import DecryptionError

__all__ = ["TokenCipher", "fingerprint", "generate_key"]


def generate_key() -> str:
    """A new random Fernet key, as the text to put in TOKENREFRESH_ENCRYPTION_KEYS."""
    return Fernet.generate_key().decode("ascii")


def fingerprint(token: str) -> str:
    """SHA-256 (hex) of a token: tells the same refresh token again without storing it.

    Safe to store: refresh tokens are long random strings, so the hash reveals nothing.
    """
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class TokenCipher:
    """Encrypts and decrypts tokens with the configured keys; the first key encrypts."""

    def __init__(self, keys: Sequence[Secret], *, source: str = ENCRYPTION_KEYS) -> None:
        if not keys:
            raise ValueError("TokenCipher needs at least one key")
        self.source = source  # where the keys came from, as errors name it
        self._fernets = [Fernet(key.reveal().encode("ascii")) for key in keys]
        self._multi = MultiFernet(self._fernets)

    @property
    def key_count(self) -> int:
        return len(self._fernets)

    def encrypt(self, token: str, *, key_position: int = 1) -> str:
        """Encrypt with the first key (or the key at `key_position`, for the key check).

        Tokens are kept exactly as TikTok sent them, even a lone surrogate (surrogatepass).
        """
        fernet = self._fernets[key_position - 1]
        return fernet.encrypt(token.encode("utf-8", "surrogatepass")).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        try:
            plaintext = self._multi.decrypt(ciphertext.encode("ascii"))
            return plaintext.decode("utf-8", "surrogatepass")
        except (InvalidToken, UnicodeError):
            raise DecryptionError() from None

    def rotate(self, ciphertext: str) -> str:
        """The same token, encrypted with the first key."""
        try:
            return self._multi.rotate(ciphertext.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError):
            raise DecryptionError() from None

    def key_position(self, ciphertext: str) -> int | None:
        """Which key (1-based) decrypts this ciphertext; None: none does."""
        data = ciphertext.encode("ascii", errors="replace")
        for position, fernet in enumerate(self._fernets, start=1):
            try:
                fernet.decrypt(data)
            except InvalidToken:
                continue
            return position
        return None
