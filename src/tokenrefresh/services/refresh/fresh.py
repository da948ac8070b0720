"""When the stored access token answers a caller as it is: the rule the quick path of
`accounts token` (`cli/quick.py`) applies, and which `OnDemand` reaches by its own longer
road (a test holds the two together over generated states)."""

from __future__ import annotations

from datetime import datetime, timedelta

from tokenrefresh.base.scopes import granted_scopes
from tokenrefresh.storage.records import AccountStatus, TokenState

__all__ = ["stored_token_serves"]


def stored_token_serves(
    state: TokenState, now: datetime, min_valid: timedelta, wanted: frozenset[str]
) -> bool:
    """True if `OnDemand.access_token` would hand out the stored token as it is: the
    account active and refreshable, its consent granting every scope in `wanted`, its
    access token stored and valid for `min_valid` from `now`. False says nothing more: a
    refresh may be due, or an error."""
    return (
        state.status == AccountStatus.ACTIVE
        and state.has_refresh_token
        and state.refresh_expires_at > now
        and wanted <= granted_scopes(state.scope)
        and state.access_token_ciphertext is not None
        and state.access_expires_at >= now + min_valid
    )
