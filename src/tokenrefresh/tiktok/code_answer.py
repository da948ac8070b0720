"""What TikTok's answer to an authorization code means: `interpret_code_answer` is pure, like
`interpret_answer`, whose reading it shares, with two differences.

A rejection names what was rejected ("the authorization code was not accepted: ..."): the
code is single use and short-lived, so the user must go through consent again. And an answer
without a refresh token or an open_id is no grant: a new account cannot be stored without
both, and there is no stored token to keep instead. The code is spent either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from tokenrefresh.outcomes import RefreshFailed, TokenGrant
from tokenrefresh.tiktok.answer import interpret_answer

__all__ = ["CODE_REJECTED", "CODE_USED", "interpret_code_answer"]

CODE_REJECTED = "the authorization code was not accepted"
CODE_USED = "the authorization code may have been used"  # a call cut short after sending


def interpret_code_answer(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    sent_at: datetime,
    elapsed: float,
    secrets: tuple[str, ...],
) -> TokenGrant:
    """One answer to an authorization-code grant as a TokenGrant with a refresh token and an
    open_id, or one of the three outcome exceptions; total, and no fragment of `secrets` (the
    code, the client secret, the verifier) or of a token in the body is ever shown."""
    grant = interpret_answer(
        status,
        headers,
        body,
        sent_at=sent_at,
        elapsed=elapsed,
        secrets=secrets,
        rejection_context=CODE_REJECTED,
    )
    missing = [
        name
        for name, value in (("a refresh token", grant.refresh_token), ("an open_id", grant.open_id))
        if value is None
    ]
    if missing:
        lacks = " and ".join(missing)
        raise RefreshFailed(
            f"TikTok's answer to the authorization code lacks {lacks} ({CODE_USED})",
            retryable=False,
            maybe_processed=True,
            http_status=grant.http_status,
            log_id=grant.log_id,
            elapsed=grant.elapsed,
        )
    return grant
