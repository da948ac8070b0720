"""Helpers shared by the test modules: reading rows back, decrypting what is stored, and
finding a fragment of a secret in output. Plain functions; fixtures live in conftest.py."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Engine, select, text

from standin import IssuedTokens
from tokenrefresh.crypto import TokenCipher
from tokenrefresh.settings import Secret
from tokenrefresh.storage.models import Account, Attempt, Run

AddAccounts = Callable[..., list[IssuedTokens]]
FRAGMENT = 12  # characters of a secret that must never appear together in output


def account(engine: Engine, open_id: str) -> dict[str, Any]:
    """The account's row, every column."""
    with engine.connect() as connection:
        row = connection.execute(select(Account.__table__).where(Account.open_id == open_id)).one()
    return dict(row._mapping)


def table(engine: Engine, name: str) -> list[dict[str, Any]]:
    """Every row of a table, in primary-key order."""
    with engine.connect() as connection:
        result = connection.execute(text(f"SELECT * FROM {name} ORDER BY 1"))
        return [dict(row._mapping) for row in result]


def all_rows(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    tables = {"accounts": Account.__table__, "runs": Run.__table__, "attempts": Attempt.__table__}
    with engine.connect() as connection:
        return {
            name: [dict(row._mapping) for row in connection.execute(select(t).order_by(t.c.id))]
            for name, t in tables.items()
        }


def runs(engine: Engine) -> list[dict[str, Any]]:
    rows = table(engine, "runs")
    for row in rows:
        row["counts"] = json.loads(row["counts"])
    return rows


def stored_tokens(engine: Engine, open_id: str, fernet_key: str) -> tuple[str | None, str | None]:
    """(access token, refresh token) as stored for the account, decrypted."""
    row = account(engine, open_id)
    cipher = TokenCipher([Secret(fernet_key)])
    return tuple(  # type: ignore[return-value]
        cipher.decrypt(row[column]) if row[column] else None
        for column in ("access_token_ciphertext", "refresh_token_ciphertext")
    )


def import_line(tokens: IssuedTokens, **extra: Any) -> str:
    return json.dumps(tokens.as_import_line(**extra)) + "\n"


def fragments(secret: str) -> set[str]:
    lowered = secret.lower()
    return {lowered[i : i + FRAGMENT] for i in range(len(lowered) - FRAGMENT + 1)}


def leaked(outputs: Iterable[str], secrets: Iterable[str]) -> list[str]:
    """Every place where FRAGMENT characters of a secret stand together, in any case."""
    forbidden: set[str] = set()
    for secret in secrets:
        forbidden |= fragments(secret)
    found = []
    for output in outputs:
        lowered = output.lower()
        for start in range(len(lowered) - FRAGMENT + 1):
            if lowered[start : start + FRAGMENT] in forbidden:
                found.append(output[max(0, start - 20) : start + FRAGMENT + 20])
    return found
