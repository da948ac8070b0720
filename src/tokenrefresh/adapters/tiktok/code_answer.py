"""What TikTok's answer to an authorization code means: `interpret_code_answer` is pure, like
`interpret_answer`, whose reading it shares, with two differences.

A rejection names what was rejected ("the authorization code was not accepted: ..."): the
code is single use and short-lived, so the user must go through consent again. And an answer
without a refresh token or a usable open_id is no grant (`UnusableGrant`): a new account
cannot be stored without both, and there is no stored token to keep instead. The code is
spent either way.

The open_id becomes the account's key and is printed, so it is checked, not trusted: 1 to
255 characters (the column's size) of visible ASCII, holding none of the call's secrets or
the answer's tokens; a JSON integer is taken as its decimal text; anything else is refused.
"""

from __future__ import annotations

from tokenrefresh.adapters.oauth import code as generic
from tokenrefresh.adapters.oauth.code import CODE_REJECTED, CODE_USED
from tokenrefresh.adapters.oauth.code import USER_ID_MAX_LENGTH as OPEN_ID_MAX_LENGTH
from tokenrefresh.adapters.oauth.code import checked_user_id as checked_open_id
from tokenrefresh.adapters.oauth.reading import Answer
from tokenrefresh.adapters.tiktok.answer import tiktok_profile
from tokenrefresh.base.outcomes import TokenGrant

__all__ = [
    "CODE_REJECTED",
    "CODE_USED",
    "OPEN_ID_MAX_LENGTH",
    "checked_open_id",
    "interpret_code_answer",
]


def interpret_code_answer(answer: Answer, secrets: tuple[str, ...]) -> TokenGrant:
    """One answer to an authorization-code grant as a TokenGrant with a refresh token and a
    checked open_id, or one of the three outcome exceptions (UnusableGrant, a RefreshFailed,
    for tokens that cannot be stored); total, and no fragment of `secrets` (the code, the
    client secret, the verifier) or of a token in the body is ever shown. The generic
    reading (`adapters/oauth/code.py`) with the `tiktok` profile."""
    return generic.interpret_code_answer(answer, tiktok_profile(), secrets)
