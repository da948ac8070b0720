"""What TikTok's answer to a revoke means: `interpret_revoke_answer` is pure, an `Answer`
(status, headers and body bytes) in, None (revoked) or one of the three outcome exceptions
out, whatever the bytes.

Believing a revoke worked when it did not is the costly mistake (the app keeps access the
user asked to end), so only a 2xx with an empty body or a JSON object without an error is a
success; 2xx garbage, 429, 5xx and unknown statuses are retryable failures. A token TikTok
no longer knows (already revoked, expired) is a UserTokenRejected: the user's access is
already gone, which is what a revoke wants, but the caller decides what that means. Only
TikTok's own documented codes say so (INVALID_TOKEN_CODES, whatever the status): a bare 401,
or one with an HTML page or an unknown code, is what a gateway in front of TikTok may answer,
and is a retryable failure like any other status.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tokenrefresh.adapters.oauth.reading import Answer, raise_if_busy, read_answer, retry_after
from tokenrefresh.adapters.tiktok.answer import APP_REJECTIONS, error_reason
from tokenrefresh.base.outcomes import AppCredentialsRejected, RefreshFailed, UserTokenRejected

__all__ = [
    "ALREADY_INVALID",
    "INVALID_TOKEN_CODES",
    "REQUEST_ERRORS",
    "REVOKED",
    "interpret_revoke_answer",
]

ALREADY_INVALID = "the access token is already invalid"
REVOKED = "the token may have been revoked"  # a call cut short after sending
# Codes that say the access token is not (or no longer) one TikTok honours.
INVALID_TOKEN_CODES = frozenset({"invalid_grant", "invalid_token", "access_token_invalid"})
# Codes that say the request itself is wrong: asking again the same way will not help.
REQUEST_ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_scope",
        "invalid_params",
        "access_denied",
        "unsupported_grant_type",
        "unsupported_token_type",
        "scope_not_authorized",
    }
)


def interpret_revoke_answer(answer: Answer, secrets: tuple[str, ...]) -> None:
    """None if TikTok revoked the token; else UserTokenRejected (already invalid),
    AppCredentialsRejected or RefreshFailed. Pure and total; `secrets` (the access token,
    the client secret) and any token in the body never appear in a reason."""
    fields, _, secrets, details = read_answer(answer, secrets)
    status, headers = answer.status, answer.headers
    if fields is not None and not _names_no_error(fields.get("error")):
        _raise_error(fields, answer, details, secrets)
    raise_if_busy(status, headers, details)
    if not 200 <= status < 300:
        raise RefreshFailed(f"unexpected HTTP {status} from TikTok", **details)
    if fields is None and answer.body.strip():
        raise RefreshFailed(
            "TikTok's answer to the revoke is neither empty nor a JSON object", **details
        )


def _names_no_error(error: object) -> bool:
    """True for no error: absent, null, empty, or the data API's {"code": "ok"}."""
    if error is None or error == "":
        return True
    return isinstance(error, Mapping) and error.get("code") == "ok"


def _raise_error(
    fields: Mapping[str, Any], answer: Answer, details: dict[str, Any], secrets: tuple[str, ...]
) -> None:
    """Raise the outcome an answer's `error` names (OAuth or data-API shape). An error field
    of any other shape is an unrecognised code: never a success."""
    error = fields.get("error")
    code: object = error
    description: object = fields.get("error_description")
    if isinstance(error, Mapping):
        code, description = error.get("code"), error.get("message")
    shown_code, reason = error_reason(
        code if isinstance(code, str) else "",
        description if isinstance(description, str) and description else None,
        answer.status,
        secrets,
    )
    details = {**details, "error_code": shown_code}
    if shown_code in INVALID_TOKEN_CODES:
        raise UserTokenRejected(f"{ALREADY_INVALID}: {reason}", **details)
    if shown_code in APP_REJECTIONS:
        raise AppCredentialsRejected(reason, **details)
    # Unknown codes are retryable: only a request TikTok called wrong is not worth repeating.
    raise RefreshFailed(
        reason,
        retryable=answer.status == 429 or answer.status >= 500 or shown_code not in REQUEST_ERRORS,
        retry_after=retry_after(answer.headers),
        **details,
    )
