"""What the keys need: every stored ciphertext in batches, rewriting it re-encrypted, and the
key check value that tells a wrong key set before anything is written."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from tokenrefresh.errors import DatabaseError
from tokenrefresh.storage.database import Database
from tokenrefresh.storage.models import Account, KeyCheck
from tokenrefresh.storage.records import TokenCiphertexts
from tokenrefresh.storage.sql import has_tokens

__all__ = ["KeyQueries"]


class KeyQueries(Database):
    """Ciphertexts and the key check value."""

    def token_batches(self, batch_size: int) -> Iterator[list[TokenCiphertexts]]:
        """Every stored ciphertext pair, in id order, a batch at a time."""
        after = 0
        while True:
            query = (
                select(
                    Account.id,
                    Account.token_generation,
                    Account.access_token_ciphertext,
                    Account.refresh_token_ciphertext,
                )
                .where(Account.id > after, has_tokens())
                .order_by(Account.id)
                .limit(batch_size)
            )
            rows = self.rows(query)
            if not rows:
                return
            yield [TokenCiphertexts(**row._mapping) for row in rows]
            after = rows[-1].id

    def replace_ciphertexts(self, batch: Sequence[TokenCiphertexts]) -> int:
        """Write re-encrypted ciphertexts of unchanged tokens; skips rows refreshed meanwhile.

        The generation is kept: the tokens are the same, only their encryption changed.
        """

        def write(connection: Connection) -> int:
            written = 0
            for row in batch:
                result = connection.execute(
                    update(Account)
                    .where(Account.id == row.id, Account.token_generation == row.token_generation)
                    .values(
                        access_token_ciphertext=row.access_token_ciphertext,
                        refresh_token_ciphertext=row.refresh_token_ciphertext,
                    )
                )
                written += result.rowcount
            return written

        return self.transaction(write)

    def any_ciphertext(self) -> str | None:
        """One stored ciphertext, any account: what the keys must be able to read."""
        query = (
            select(func.coalesce(Account.refresh_token_ciphertext, Account.access_token_ciphertext))
            .where(has_tokens())
            .limit(1)
        )
        value: str | None = self.scalar(query)
        return value

    def key_check(self) -> str | None:
        """The stored key check value (a known text encrypted with the keys), if any."""
        value: str | None = self.scalar(select(KeyCheck.ciphertext).where(KeyCheck.id == 1))
        return value

    def save_key_check(self, ciphertext: str, *, replacing: str | None) -> bool:
        """Store the key check value: a first one (`replacing` None; a concurrent first one
        wins), or in place of `replacing` (compare-and-set). True if this one was stored."""
        now = self.clock()

        def write(connection: Connection) -> bool:
            if replacing is None:
                if connection.execute(select(KeyCheck.id)).first() is not None:
                    return False
                connection.execute(
                    insert(KeyCheck).values(id=1, ciphertext=ciphertext, updated_at=now)
                )
                return True
            result = connection.execute(
                update(KeyCheck)
                .where(KeyCheck.id == 1, KeyCheck.ciphertext == replacing)
                .values(ciphertext=ciphertext, updated_at=now)
            )
            return bool(result.rowcount)

        try:
            return self.transaction(write)
        except DatabaseError as error:
            if isinstance(error.__cause__, IntegrityError):
                return False  # another process stored the first one meanwhile
            raise
