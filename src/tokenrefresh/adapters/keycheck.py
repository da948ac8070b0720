"""The key check value: proof that the configured keys read what this database stores,
made before anything is written (a wrong key set exits 3 with nothing changed). The
factories (`context.py`) run it when a command asks for a verified cipher; `keys check`
runs it first."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tokenrefresh.errors import DecryptionError

if TYPE_CHECKING:  # `keys generate` and `status` import neither cryptography nor SQLAlchemy here
    from tokenrefresh.adapters.crypto import TokenCipher
    from tokenrefresh.storage.repository import Repository

__all__ = ["KEY_CHECK_TEXT", "verify_keys", "wrong_keys"]

log = logging.getLogger("tokenrefresh.keys")  # the name logs have always shown

KEY_CHECK_TEXT = "tokenrefresh key check"  # known plaintext; Fernet is safe against that


def wrong_keys(source: str) -> str:
    """The error for keys that cannot read the stored tokens. `source` says where the keys
    came from (TOKENREFRESH_ENCRYPTION_KEYS, or its _FILE and path); it never suggests a
    new key: a new key cannot read what is stored."""
    return (
        f"no key in {source} decrypts what this database stores (a wrong key, or the key the "
        "tokens were encrypted with was removed before `tokenrefresh keys rotate`); nothing "
        "was changed. Configure the key these tokens were stored with: a new key cannot read them"
    )


def verify_keys(repository: Repository, cipher: TokenCipher) -> None:
    """Exit 3 (DecryptionError) before anything is written if the keys cannot read the store.

    The key check value is a known text encrypted with the key that the stored tokens use
    (the first key once `keys rotate` has moved everything), so a wrong key is caught even
    when nothing is due. A store with no ciphertext at all has nothing to lose: a new key
    set simply takes over.
    """
    stored = repository.key_check()
    if stored is not None:
        if cipher.key_position(stored) is not None:
            return
        if repository.any_ciphertext() is not None:
            raise DecryptionError(wrong_keys(cipher.source))
        if repository.save_key_check(cipher.encrypt(KEY_CHECK_TEXT), replacing=stored):
            log.warning(
                "the configured keys are not the ones this database was used with, but it "
                "stores no encrypted token: the new keys take over"
            )
        return
    sample = repository.any_ciphertext()
    position = 1 if sample is None else cipher.key_position(sample)
    if position is None:
        raise DecryptionError(wrong_keys(cipher.source))
    repository.save_key_check(cipher.encrypt(KEY_CHECK_TEXT, key_position=position), replacing=None)
