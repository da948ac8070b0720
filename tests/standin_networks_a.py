"""Stand-ins for TikTok API for Business, LinkedIn, Pinterest, Reddit and Zoom token
endpoints, each written from its provider's own documentation (cited per class), never from
our profiles: a stand-in built from a profile would prove only that the profile agrees with
itself. Each serves on 127.0.0.1, keeps the tokens it issued, records what it received, and
checks the app's credentials where that provider wants them (HTTP Basic, the form body, or
a JSON body). Standard library only; the state and the recording are
tests/standin_providers.py's.

Where a provider's documents are silent, the stand-in says "unsure" and does the least
surprising thing; our profiles must not read meaning into those answers either.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from standin_providers import Provider, Received, envelope, serve

__all__ = [
    "PROVIDERS",
    "LinkedIn",
    "Pinterest",
    "Reddit",
    "TikTokBusiness",
    "Zoom",
    "serving",
]

DAY = 86_400


class TikTokBusiness(Provider):
    """TikTok API for Business, TikTok Accounts (business-api.tiktok.com/portal/docs, Accounts
    API "Authorization"): POST JSON to /open_api/v1.3/tt_user/oauth2/refresh_token/ with
    client_id (the app id), client_secret, grant_type=refresh_token and refresh_token. Every
    answer is HTTP 200 with {code, message, request_id, data}; code 0 is success, and data
    then holds access_token, expires_in (86400), open_id, refresh_token,
    refresh_token_expires_in (a year), scope (a comma list) and token_type. Unsure: the codes
    for a wrong app secret and for a dead refresh token (here 40001 and 40105), and
    rotation (here the old refresh token dies). The code exchange: POST JSON to
    /open_api/v1.3/tt_user/oauth2/token/ with client_id, client_secret,
    grant_type=authorization_code, auth_code and redirect_uri; the same envelope. Revoke:
    POST JSON to /open_api/v1.3/tt_user/oauth2/revoke/ with client_id, client_secret and
    access_token."""

    open_id = "-000tt-business-open-id"

    def answer(self, request: Received) -> tuple[int, dict[str, Any]]:
        body = request.form
        if request.method != "POST" or request.headers.get("content-type") != "application/json":
            return 200, envelope(40002, "The request body must be JSON")
        if (body.get("client_id"), body.get("client_secret")) != (
            self.client_id,
            self.client_secret,
        ):
            return 200, envelope(40001, "The app_id or secret is invalid")
        if request.path.endswith("/tt_user/oauth2/revoke/"):
            # Revoke: client_id, client_secret and the access_token; the same envelope.
            if self.access_tokens.pop(body.get("access_token", ""), None) is None:
                return 200, envelope(40104, "The access token is invalid or has expired")
            return 200, envelope(0, "OK")
        if request.path.endswith("/tt_user/oauth2/token/"):
            # The code exchange: grant_type=authorization_code, the code as auth_code, and
            # the redirect_uri it was issued for.
            form = {**body, "code": body.get("auth_code", "")}
            if body.get("grant_type") != "authorization_code" or not self.code_accepted(form):
                return 200, envelope(40106, "The auth_code is invalid or has expired")
            return 200, envelope(0, "OK", self._data(*self.issue()))
        presented = body.get("refresh_token", "")
        if body.get("grant_type") != "refresh_token" or presented not in self.refresh_tokens:
            return 200, envelope(40105, "The refresh token is invalid or has expired")
        self.refresh_tokens.discard(presented)
        return 200, envelope(0, "OK", self._data(*self.issue()))

    def _data(self, access: str, refresh: str) -> dict[str, Any]:
        return {
            "access_token": access,
            "expires_in": DAY,
            "open_id": self.open_id,
            "refresh_token": refresh,
            "refresh_token_expires_in": 365 * DAY,
            "scope": "user.info.basic,video.list",
            "token_type": "Bearer",
        }

    def issue(self) -> tuple[str, str]:
        """A token pair, as the code exchange or a refresh issues it."""
        access, refresh = self.new_token("act.business"), self.new_token("rft.business")
        self.refresh_tokens.add(refresh)
        self.access_tokens[access] = time.time()
        return access, refresh


class LinkedIn(Provider):
    """LinkedIn (learn.microsoft.com/linkedin/shared/authentication/programmatic-refresh-tokens
    and authorization-code-flow): POST form to /oauth/v2/accessToken with grant_type,
    refresh_token, client_id and client_secret in the body. The answer has access_token,
    expires_in (60 days), refresh_token, refresh_token_expires_in and scope. The refresh
    token lives 365 days from consent: a refresh gives a new access token for 60 days, and
    the refresh token's remaining lifetime (the same token here) keeps counting down. Errors
    are RFC 6749's (unsure): 400 invalid_grant for a dead refresh token, 401
    invalid_client for wrong credentials."""

    def __init__(self) -> None:
        super().__init__()
        self.refresh_expires: dict[str, float] = {}  # refresh token -> when it dies (epoch)

    def answer(self, request: Received) -> tuple[int, dict[str, Any]]:
        form = request.form
        if (form.get("client_id"), form.get("client_secret")) != (
            self.client_id,
            self.client_secret,
        ):
            return 401, {
                "error": "invalid_client",
                "error_description": "Client authentication failed",
            }
        presented = form.get("refresh_token", "")
        dies = self.refresh_expires.get(presented, 0.0)
        if form.get("grant_type") != "refresh_token" or dies <= time.time():
            return 400, {
                "error": "invalid_grant",
                "error_description": "The provided authorization grant or refresh token is "
                "invalid, expired or revoked",
            }
        access = self.new_token("AQV")
        self.access_tokens[access] = time.time()
        return 200, {
            "access_token": access,
            "expires_in": 60 * DAY,
            "refresh_token": presented,
            "refresh_token_expires_in": int(dies - time.time()),
            "scope": "r_ads,r_basicprofile",
        }

    def consent(self, days_ago: int = 0) -> tuple[str, str]:
        """A token pair as the code exchange gave it `days_ago` days ago (365-day refresh)."""
        access, refresh = self.new_token("AQV"), self.new_token("AQX")
        self.access_tokens[access] = time.time()
        self.refresh_tokens.add(refresh)
        self.refresh_expires[refresh] = time.time() + (365 - days_ago) * DAY
        return access, refresh


class Pinterest(Provider):
    """Pinterest API v5 (github.com/pinterest/api-description v5/openapi.yaml, operation
    oauth/token; developers.pinterest.com "Set up authentication and authorization"): POST
    form to /v5/oauth/token with HTTP Basic (client id:secret) and grant_type=refresh_token,
    refresh_token (and continuous_refresh=true for apps made before September 25, 2025).
    The answer has access_token, expires_in (30 days here), scope, token_type,
    response_type, and a new refresh_token with refresh_token_expires_in (60 days) and the
    absolute refresh_token_expires_at. Errors are {code, message}: 2 "Authentication
    failed." (401) for the client; 283 "The authorization grant is invalid" (401) for a
    bad refresh token (pinterest-python-sdk issue 114). Unsure: rotation (here the old
    refresh token dies)."""

    def answer(self, request: Received) -> tuple[int, dict[str, Any]]:
        if self.basic_credentials(request) != (self.client_id, self.client_secret):
            return 401, {"code": 2, "message": "Authentication failed."}
        form = request.form
        presented = form.get("refresh_token", "")
        if form.get("grant_type") != "refresh_token" or presented not in self.refresh_tokens:
            return 401, {"code": 283, "message": "The authorization grant is invalid"}
        self.refresh_tokens.discard(presented)
        access, refresh = self.new_token("pina"), self.new_token("pinr")
        self.access_tokens[access] = time.time()
        self.refresh_tokens.add(refresh)
        now = int(time.time())
        return 200, {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": 30 * DAY,
            "scope": "boards:read,pins:read,user_accounts:read",
            "response_type": "refresh_token",
            "refresh_token": refresh,
            "refresh_token_expires_in": 60 * DAY,
            "refresh_token_expires_at": now + 60 * DAY,
        }

    def consent(self) -> tuple[str, str]:
        access, refresh = self.new_token("pina"), self.new_token("pinr")
        self.access_tokens[access] = time.time()
        self.refresh_tokens.add(refresh)
        return access, refresh


class Reddit(Provider):
    """Reddit (github.com/reddit-archive/reddit/wiki/OAuth2): POST form to
    /api/v1/access_token with HTTP Basic (client id:secret); without valid credentials, 401
    {"message": "Unauthorized", "error": 401}. grant_type=refresh_token with the refresh
    token of a duration=permanent consent answers {access_token, token_type, expires_in:
    3600, scope} and no new refresh token: the same one refreshes again. A bad one: 400
    {"error": "invalid_grant"}. Revoke: POST /api/v1/revoke_token `token` and
    `token_type_hint`, HTTP Basic, 204 even for an unknown token; a revoked refresh token
    takes its access tokens with it."""

    def answer(self, request: Received) -> tuple[int, dict[str, Any]]:
        if self.basic_credentials(request) != (self.client_id, self.client_secret):
            return 401, {"message": "Unauthorized", "error": 401}
        form = request.form
        if request.path == "/api/v1/revoke_token":
            self.refresh_tokens.discard(form.get("token", ""))
            self.access_tokens.pop(form.get("token", ""), None)
            return 204, {}
        if (
            form.get("grant_type") != "refresh_token"
            or form.get("refresh_token") not in self.refresh_tokens
        ):
            return 400, {"error": "invalid_grant"}
        access = self.new_token("eyJreddit")
        self.access_tokens[access] = time.time()
        return 200, {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": 3600,
            "scope": "identity read",
        }

    def consent(self) -> tuple[str, str]:
        access, refresh = self.new_token("eyJreddit"), self.new_token("reddit-refresh")
        self.access_tokens[access] = time.time()
        self.refresh_tokens.add(refresh)
        return access, refresh


class Zoom(Provider):
    """Zoom OAuth apps (developers.zoom.us/docs/integrations/oauth/; devsupport.zoom.us
    "Extending the expiration for an OAuth access token"): POST form to /oauth/token with
    HTTP Basic (client id:secret), grant_type=refresh_token and refresh_token; the answer
    has access_token, token_type, refresh_token (a new one), expires_in 3599 and scope. Only
    the latest refresh token works: an older one gets 400 {"reason": "Invalid Token!",
    "error": "invalid_grant"} (the shape reported in raycast/extensions 10896). Wrong
    client credentials: 401 {"reason": "Invalid client_id or client_secret", "error":
    "invalid_client"} (unsure: the reason's words). Revoke: POST /oauth/revoke `token`,
    HTTP Basic, {"status": "success"}."""

    def answer(self, request: Received) -> tuple[int, dict[str, Any]]:
        if self.basic_credentials(request) != (self.client_id, self.client_secret):
            return 401, {"reason": "Invalid client_id or client_secret", "error": "invalid_client"}
        form = request.form
        if request.path == "/oauth/revoke":
            self.access_tokens.pop(form.get("token", ""), None)
            return 200, {"status": "success"}
        presented = form.get("refresh_token", "")
        if form.get("grant_type") != "refresh_token" or presented not in self.refresh_tokens:
            return 400, {"reason": "Invalid Token!", "error": "invalid_grant"}
        self.refresh_tokens.discard(presented)
        access, refresh = self.consent()
        return 200, {
            "access_token": access,
            "token_type": "bearer",
            "refresh_token": refresh,
            "expires_in": 3599,
            "scope": "meeting:read user:read",
        }

    def consent(self) -> tuple[str, str]:
        access, refresh = self.new_token("eyJzoom"), self.new_token("eyJzoom-refresh")
        self.access_tokens[access] = time.time()
        self.refresh_tokens.add(refresh)
        return access, refresh


PROVIDERS: dict[str, type[Provider]] = {
    "tiktok-business": TikTokBusiness,
    "linkedin": LinkedIn,
    "pinterest": Pinterest,
    "reddit": Reddit,
    "zoom": Zoom,
}


@contextmanager
def serving(name: str) -> Iterator[tuple[Provider, str]]:
    """The stand-in of provider `name`, and its base URL, while the block runs."""
    with serve(PROVIDERS[name]()) as served:
        yield served
