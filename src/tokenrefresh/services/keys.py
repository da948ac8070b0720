"""`keys rotate` and `keys check`: move every stored token to the first key, and prove it.
The key check value that tells a wrong key set first is `adapters/keycheck.py`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

from tokenrefresh.adapters.crypto import TokenCipher
from tokenrefresh.adapters.keycheck import verify_keys
from tokenrefresh.errors import DecryptionError
from tokenrefresh.storage.repository import Repository

__all__ = ["KeyCheckReport", "RotateReport", "check_keys", "rotate_keys"]

BATCH_SIZE = 500
MAX_LISTED = 20


@dataclass(frozen=True)
class KeyCheckReport:
    """How many stored tokens each configured key decrypts (key 1 is the one that encrypts)."""

    tokens_by_key: dict[int, int]
    undecryptable_accounts: list[int]
    key_count: int
    check_value_key: int | None = None  # the key of the key check value; None: none decrypts

    @property
    def unreadable(self) -> bool:
        """Some stored token, or the key check value, cannot be decrypted (exit 3)."""
        return bool(self.undecryptable_accounts) or (
            self.check_value_key is None and any(self.tokens_by_key.values())
        )

    @property
    def old_keys_in_use(self) -> bool:
        if self.check_value_key is not None and self.check_value_key > 1:
            return True
        return any(position > 1 and count for position, count in self.tokens_by_key.items())


@dataclass(frozen=True)
class RotateReport:
    rotated: int
    skipped: int  # refreshed while rotating: already written with the first key


def check_keys(repository: Repository, cipher: TokenCipher) -> KeyCheckReport:
    counts: Counter[int] = Counter()
    undecryptable: list[int] = []
    for batch in repository.token_batches(BATCH_SIZE):
        for row in batch:
            for ciphertext in (row.access_token_ciphertext, row.refresh_token_ciphertext):
                if ciphertext is None:
                    continue
                position = cipher.key_position(ciphertext)
                if position is None:
                    if row.id not in undecryptable:
                        undecryptable.append(row.id)
                else:
                    counts[position] += 1
    stored_check = repository.key_check()
    return KeyCheckReport(
        tokens_by_key={position: counts[position] for position in range(1, cipher.key_count + 1)},
        undecryptable_accounts=undecryptable,
        key_count=cipher.key_count,
        check_value_key=cipher.key_position(stored_check) if stored_check is not None else 1,
    )


def rotate_keys(repository: Repository, cipher: TokenCipher) -> RotateReport:
    """Re-encrypt every token with the first key; nothing changes if any token is unreadable."""
    check = check_keys(repository, cipher)
    if check.undecryptable_accounts:
        shown = ", ".join(str(account) for account in check.undecryptable_accounts[:MAX_LISTED])
        more = len(check.undecryptable_accounts) - MAX_LISTED
        raise DecryptionError(
            f"no key in {cipher.source} decrypts the tokens of account(s) "
            f"{shown}{f' and {more} more' if more > 0 else ''}; nothing was re-encrypted"
        )
    verify_keys(repository, cipher)
    rotated = skipped = 0
    for batch in repository.token_batches(BATCH_SIZE):
        updated = [
            replace(
                row,
                access_token_ciphertext=_rotate(cipher, row.access_token_ciphertext),
                refresh_token_ciphertext=_rotate(cipher, row.refresh_token_ciphertext),
            )
            for row in batch
        ]
        written = repository.replace_ciphertexts(updated)
        rotated += written
        skipped += len(updated) - written
    # Every token is on the first key now (a skipped row was written with it meanwhile),
    # so the check value follows: the older keys can go.
    stored_check = repository.key_check()
    if stored_check is not None:
        repository.save_key_check(cipher.rotate(stored_check), replacing=stored_check)
    return RotateReport(rotated=rotated, skipped=skipped)


def _rotate(cipher: TokenCipher, ciphertext: str | None) -> str | None:
    return cipher.rotate(ciphertext) if ciphertext is not None else None
