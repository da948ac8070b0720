"""The repository: every query tokenrefresh runs, in methods named for what they do.

One object for the services to hold, made of one part per area (each its own module):
claims (`claims.py`), accounts, history, stats, expiry, keys and the outbox. Services get
plain frozen records back (`records.py`), never ORM objects or rows, and never plaintext
tokens: this layer stores and returns ciphertexts only.
"""

from __future__ import annotations

from tokenrefresh.storage.accounts import AccountQueries
from tokenrefresh.storage.claims import Claim, ClaimQueries, GrantNotStored
from tokenrefresh.storage.expiry import ExpiryQueries
from tokenrefresh.storage.history import HistoryQueries
from tokenrefresh.storage.keyring import KeyQueries
from tokenrefresh.storage.outbox import OutboxQueries
from tokenrefresh.storage.stats import StatsQueries

__all__ = ["Claim", "GrantNotStored", "Repository"]


class Repository(
    ClaimQueries,
    AccountQueries,
    HistoryQueries,
    StatsQueries,
    ExpiryQueries,
    KeyQueries,
    OutboxQueries,
):
    """All database access of tokenrefresh (see the modules of its parts)."""
