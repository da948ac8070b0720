"""`keys rotate` and `keys check`: move every stored token to the first key, and prove it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

from tokenrefresh.crypto import TokenCipher
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

    @property
    def old_keys_in_use(self) -> bool:
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
                position = cipher.key_usage(ciphertext).position
                if position is None:
                    if row.id not in undecryptable:
                        undecryptable.append(row.id)
                else:
                    counts[position] += 1
    return KeyCheckReport(
        tokens_by_key={position: counts[position] for position in range(1, cipher.key_count + 1)},
        undecryptable_accounts=undecryptable,
        key_count=cipher.key_count,
    )


def rotate_keys(repository: Repository, cipher: TokenCipher) -> RotateReport:
    """Re-encrypt every token with the first key; nothing changes if any token is unreadable."""
    check = check_keys(repository, cipher)
    if check.undecryptable_accounts:
        shown = ", ".join(str(account) for account in check.undecryptable_accounts[:MAX_LISTED])
        more = len(check.undecryptable_accounts) - MAX_LISTED
        raise DecryptionError(
            "no key in TOKENREFRESH_ENCRYPTION_KEYS decrypts the tokens of account(s) "
            f"{shown}{f' and {more} more' if more > 0 else ''}; nothing was re-encrypted"
        )
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
    return RotateReport(rotated=rotated, skipped=skipped)


def _rotate(cipher: TokenCipher, ciphertext: str | None) -> str | None:
    return cipher.rotate(ciphertext) if ciphertext is not None else None
