"""TokenCipher: tokens at rest, encrypted with Fernet; nothing else touches cryptography.

The first key encrypts, every key decrypts (MultiFernet), so a new key can be put first,
`tokenrefresh keys rotate` re-encrypts every token with it, and the old key can go.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from tokenrefresh.errors import DecryptionError
from tokenrefresh.settings import Secret

__all__ = ["KeyUsage", "TokenCipher", "generate_key"]


def generate_key() -> str:
    """A new random Fernet key, as the text to put in TOKENREFRESH_ENCRYPTION_KEYS."""
    return Fernet.generate_key().decode("ascii")


@dataclass(frozen=True)
class KeyUsage:
    """Which configured key (1-based position) can decrypt a ciphertext; None: none can."""

    position: int | None


class TokenCipher:
    """Encrypts and decrypts tokens with the configured keys; the first key encrypts."""

    def __init__(self, keys: Sequence[Secret]) -> None:
        if not keys:
            raise ValueError("TokenCipher needs at least one key")
        self._fernets = [Fernet(key.reveal().encode("ascii")) for key in keys]
        self._multi = MultiFernet(self._fernets)

    @property
    def key_count(self) -> int:
        return len(self._fernets)

    def encrypt(self, token: str) -> str:
        return self._multi.encrypt(token.encode("utf-8")).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._multi.decrypt(ciphertext.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise DecryptionError() from None

    def rotate(self, ciphertext: str) -> str:
        """The same token, encrypted with the first key."""
        try:
            return self._multi.rotate(ciphertext.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError):
            raise DecryptionError() from None

    def key_usage(self, ciphertext: str) -> KeyUsage:
        """Which key decrypts this ciphertext: tells when an old key is no longer needed."""
        data = ciphertext.encode("ascii", errors="replace")
        for position, fernet in enumerate(self._fernets, start=1):
            try:
                fernet.decrypt(data)
            except InvalidToken:
                continue
            return KeyUsage(position)
        return KeyUsage(None)
