"""What TikTok's answer means: the generic interpreter (`adapters/oauth/answer.py`) read with
the shipped `tiktok` profile. `interpret_answer` is pure, an `Answer` (status, headers and
body bytes) in, a TokenGrant or one of three exceptions out, whatever the bytes are.

TikTok answers errors in the body, with statuses that are not documented and have been seen
to be 200, so the body's `error` is read whatever the status. But an answer that carries a
new refresh token is a grant whatever else it says: the old token may be spent. The
constants below are what the profile says; a test holds the two together.
"""

from __future__ import annotations

from datetime import timedelta

from tokenrefresh.adapters.oauth import answer as generic
from tokenrefresh.adapters.oauth.answer import ROTATED, UNRECOGNISED_CODE
from tokenrefresh.adapters.oauth.reading import MAX_RETRY_AFTER, Answer
from tokenrefresh.base.outcomes import TokenGrant
from tokenrefresh.base.providers import Profile, shipped_profile

__all__ = [
    "APP_REJECTIONS",
    "MAX_ACCESS_LIFETIME",
    "MAX_REFRESH_LIFETIME",
    "MAX_RETRY_AFTER",
    "RETRYABLE_CODES",
    "ROTATED",
    "UNRECOGNISED_CODE",
    "USER_REJECTIONS",
    "error_reason",
    "interpret_answer",
    "tiktok_profile",
]

# Longer lifetimes are cut to these: refreshing sooner than needed is always safe.
MAX_ACCESS_LIFETIME = timedelta(days=1)  # the longest TikTok ever documented
MAX_REFRESH_LIFETIME = timedelta(days=366)

# Error codes by what they say about the refresh token (from TikTok's "OAuth error handling").
USER_REJECTIONS = frozenset({"invalid_grant", "access_denied"})
APP_REJECTIONS = frozenset({"invalid_client", "unauthorized_client"})
RETRYABLE_CODES = frozenset(
    {"server_error", "temporarily_unavailable", "rate_limit_exceeded", "internal_error"}
)


def tiktok_profile() -> Profile:
    return shipped_profile("tiktok")


def interpret_answer(
    answer: Answer, secrets: tuple[str, ...], *, rejection_context: str | None = None
) -> TokenGrant:
    """One answer of TikTok's token endpoint as a TokenGrant, or one of the three outcome
    exceptions; see `adapters/oauth/answer.py`."""
    return generic.interpret_answer(
        answer, tiktok_profile(), secrets, rejection_context=rejection_context
    )


def error_reason(
    code: str, description: str | None, status: int, secrets: tuple[str, ...]
) -> tuple[str | None, str]:
    """The error code if it looks like one of TikTok's (else None), and the reason."""
    return generic.error_reason(code, description, status, secrets, tiktok_profile())
