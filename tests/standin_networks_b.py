"""Stand-ins for Threads', Spotify's, Dropbox's and Xero's token endpoints, each written from
its provider's own documentation (cited per class), never from our profiles: a stand-in
built from a profile would prove only that the profile agrees with itself. Each serves on
127.0.0.1, keeps the tokens it issued, records what it received, checks the app's
credentials the provider's way, and answers a dead token as its provider does.

Two things beyond tests/standin_providers.py, which these reuse (`Provider`, `Received`):
- `clock`: what "now" is for a stand-in (time.time unless a test replaces it, or moves it
  on with `advance`), so a test can age a token without waiting;
- lost answers (`drop_next_answer`, `drop_answers`: see standin_providers.Provider), which
  every stand-in has. Standard library only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from standin_providers import Provider, Received, graph_error, serve

__all__ = ["PROVIDERS", "Dropbox", "Network", "Spotify", "Threads", "Xero", "serving"]

DAY = 86400.0


@dataclass
class Network(Provider):
    """A Provider whose "now" is `clock()`."""

    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        """Each stand-in's own state (its __post_init__ is called by the dataclass __init__)."""

    def advance(self, seconds: float) -> None:
        """Move this stand-in's "now" on by `seconds` (tokens age; nothing waits)."""
        base = self.clock
        self.clock = lambda: base() + seconds

    def issue_access(self, prefix: str) -> str:
        token = self.new_token(prefix)
        self.access_tokens[token] = self.clock()
        return token

    def credentials(self, request: Received) -> tuple[str | None, str | None]:
        """HTTP Basic if sent, else client_id and client_secret in the form."""
        basic = self.basic_credentials(request)
        if basic is not None:
            return basic
        return request.form.get("client_id"), request.form.get("client_secret")


class Threads(Network):
    """Threads API (developers.facebook.com/docs/threads/get-started/long-lived-tokens):
    GET /refresh_access_token?grant_type=th_refresh_token&access_token=... refreshes an
    unexpired long-lived token at least 24 hours old, with no client credentials, and
    answers {access_token, token_type, expires_in: 5183944}; the new token is valid 60 days
    from the refresh, and one not refreshed within 60 days is dead. "Get Access Tokens and
    Permissions" (.../threads/get-started/get-access-tokens-and-permissions): POST
    /oauth/access_token (client_id, client_secret, code, grant_type=authorization_code,
    redirect_uri) gives a short-lived token and the user_id; GET /access_token?grant_type=
    th_exchange_token&client_secret=...&access_token=<short-lived> a long-lived one.
    Errors are the Graph API's {"error": {message, type, code, fbtrace_id}}
    (developers.facebook.com/docs/graph-api/guides/error-handling): 190 for an invalid or
    expired token. Unsure: the answer to a token under 24 hours old (here the Graph API's
    generic 100 with a message), and Threads' codes for a wrong app (here 101, as Meta's)."""

    user_id = "25076134298765432"
    short_lived: dict[str, float]

    def __post_init__(self) -> None:
        self.short_lived = {}

    def answer(self, request: Received) -> tuple[int, dict[str, Any]]:
        if request.path == "/oauth/access_token":
            return self._short_lived(request)
        if request.path == "/access_token":
            return self._long_lived(request)
        query = request.query
        if request.method != "GET" or query.get("grant_type") != "th_refresh_token":
            return 400, graph_error(100, "Unsupported request")
        token = query.get("access_token", "")
        issued = self.access_tokens.get(token)
        if issued is None or self.clock() - issued >= 60 * DAY:
            return 400, graph_error(190, "Error validating access token: Session has expired")
        if self.clock() - issued < DAY:
            return 400, graph_error(100, "The access token is not old enough to be refreshed")
        return 200, self._token()

    def _short_lived(self, request: Received) -> tuple[int, dict[str, Any]]:
        form = request.form
        if request.method != "POST" or (form.get("client_id"), form.get("client_secret")) != (
            self.client_id,
            self.client_secret,
        ):
            return 400, graph_error(101, "Error validating application. Invalid application ID")
        if form.get("grant_type") != "authorization_code" or not self.code_accepted(form):
            return 400, graph_error(100, "Invalid authorization code")
        short = self.new_token("THshort")
        self.short_lived[short] = self.clock()
        return 200, {"access_token": short, "user_id": int(self.user_id)}

    def _long_lived(self, request: Received) -> tuple[int, dict[str, Any]]:
        query = request.query
        if request.method != "GET" or query.get("grant_type") != "th_exchange_token":
            return 400, graph_error(100, "Unsupported request")
        if query.get("client_secret") != self.client_secret:
            return 400, graph_error(101, "Error validating client secret.")
        issued = self.short_lived.pop(query.get("access_token", ""), None)
        if issued is None or self.clock() - issued >= 3600:
            return 400, graph_error(190, "Invalid OAuth access token - Cannot parse access token")
        return 200, self._token()

    def _token(self) -> dict[str, Any]:
        return {
            "access_token": self.issue_access("THQV"),
            "token_type": "bearer",
            "expires_in": 5183944,
        }


class Spotify(Network):
    """Spotify's Web API (developer.spotify.com/documentation/web-api/tutorials/
    refreshing-tokens and .../code-flow): POST /api/token, a form of grant_type=refresh_token
    and refresh_token, the app as HTTP Basic; the answer {access_token, token_type: "Bearer",
    scope, expires_in: 3600} carries a new refresh_token only sometimes (here when
    `give_new_refresh_token` is set). A refresh token lives 6 months from consent, however
    often it is used (developer.spotify.com/blog/2026-06-18-refresh-token-expiration), then
    invalid_grant. Wrong app credentials: 400 invalid_client "Invalid client"; a revoked
    token: 400 invalid_grant "Refresh token revoked" (Spotify's issue tracker). Unsure:
    whether the old refresh token still works once a new one was given (here it does not)."""

    give_new_refresh_token: bool = False
    consented: dict[str, float]  # refresh token -> when its user consented

    def __post_init__(self) -> None:
        self.consented = {}

    def consent(self, age: float = 0.0) -> tuple[str, str]:
        """A token pair as the code exchange gives it, the consent `age` seconds ago."""
        refresh = self.new_token("AQspotify")
        self.refresh_tokens.add(refresh)
        self.consented[refresh] = self.clock() - age
        return self.issue_access("BQspotify"), refresh

    def answer(self, request: Received) -> tuple[int, dict[str, Any]]:
        if self.basic_credentials(request) != (self.client_id, self.client_secret):
            return 400, {"error": "invalid_client", "error_description": "Invalid client"}
        form = request.form
        if form.get("grant_type") == "authorization_code":
            if not self.code_accepted(form):
                return 400, {
                    "error": "invalid_grant",
                    "error_description": "Invalid authorization code",
                }
            access, refresh = self.consent()
            return 200, {**self._access(access), "refresh_token": refresh}
        presented = form.get("refresh_token", "")
        if form.get("grant_type") != "refresh_token":
            return 400, {
                "error": "unsupported_grant_type",
                "error_description": "grant_type must be one of ...",
            }
        consented = self.consented.get(presented)
        if presented not in self.refresh_tokens or consented is None:
            return 400, {"error": "invalid_grant", "error_description": "Refresh token revoked"}
        if self.clock() - consented >= 182 * DAY:
            return 400, {"error": "invalid_grant", "error_description": "Refresh token expired"}
        answer = self._access(self.issue_access("BQspotify"))
        if self.give_new_refresh_token:
            self.refresh_tokens.discard(presented)
            new = self.new_token("AQspotify")
            self.refresh_tokens.add(new)
            self.consented[new] = consented  # the 6 months count from the user's consent
            answer["refresh_token"] = new
        return 200, answer

    def _access(self, access: str) -> dict[str, Any]:
        return {
            "access_token": access,
            "token_type": "Bearer",
            "scope": "user-read-private",
            "expires_in": 3600,
        }


class Dropbox(Network):
    """Dropbox (developers.dropbox.com/oauth-guide; dropbox.tech/developers/using-oauth-2-0-
    with-offline-access; the HTTP documentation's /oauth2/token and /2/auth/token/revoke):
    POST /oauth2/token, a form of grant_type=refresh_token and refresh_token, the app key
    and secret as HTTP Basic or as client_id and client_secret in the form; the answer is
    {access_token, token_type: "bearer", expires_in: 14400}, no new refresh token (the one
    from an offline consent stays until revoked). A dead one: 400 invalid_grant "refresh
    token is invalid or revoked"; wrong app credentials: 400 {"error": "invalid_client:
    Invalid client_id or client_secret"} (as reported and checked by client libraries; the
    documents show no example). POST /2/auth/token/revoke with "Authorization: Bearer
    <access token>" and no body revokes it and its refresh token: 200, a JSON null."""

    by_access: dict[str, str]  # access token -> the refresh token it came from

    def __post_init__(self) -> None:
        self.by_access = {}

    def consent(self) -> tuple[str, str]:
        refresh = self.new_token("dbx-refresh")
        self.refresh_tokens.add(refresh)
        access = self.issue_access("sl.dbx")
        self.by_access[access] = refresh
        return access, refresh

    def answer(self, request: Received) -> tuple[int, dict[str, Any]]:
        if request.path == "/2/auth/token/revoke":
            header = request.headers.get("authorization", "")
            access = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
            if access not in self.access_tokens:
                return 401, {
                    "error_summary": "invalid_access_token/..",
                    "error": {".tag": "invalid_access_token"},
                }
            self.access_tokens.pop(access)
            self.refresh_tokens.discard(self.by_access.pop(access, ""))
            return 200, None  # type: ignore[return-value]
        if self.credentials(request) != (self.client_id, self.client_secret):
            return 400, {"error": "invalid_client: Invalid client_id or client_secret"}
        form = request.form
        if form.get("grant_type") != "refresh_token":
            return 400, {"error": "unsupported_grant_type"}
        presented = form.get("refresh_token", "")
        if presented not in self.refresh_tokens:
            return 400, {
                "error": "invalid_grant",
                "error_description": "refresh token is invalid or revoked",
            }
        access = self.issue_access("sl.dbx")
        self.by_access[access] = presented
        return 200, {"access_token": access, "token_type": "bearer", "expires_in": 14400}


class Xero(Network):
    """Xero (developer.xero.com/faq/oauth2; developer.xero.com/documentation/guides/oauth2/
    auth-flow): POST /connect/token, a form of grant_type=refresh_token and refresh_token,
    the app as HTTP Basic (else 400 invalid_client); the answer {id_token, access_token,
    expires_in: 1800, token_type: "Bearer", refresh_token, scope} always carries a new
    refresh token, which replaces the old. If the answer was lost, the old refresh token may
    be presented again for 30 minutes (GRACE); unused refresh tokens die after 60 days; a
    dead, revoked or replaced one gets 400 invalid_grant. POST /connect/revocation (Basic,
    `token` = a refresh token) revokes the grant: 200, no body.

    The grace, as modelled: `used` maps each refresh token presented successfully to (when,
    the refresh token that call issued). Presenting a used one again is accepted while
    `clock() - when <= GRACE` and the token it issued has not been used in turn (the chain
    has not moved on); the answer is a new pair, and the pair of the lost answer is revoked
    (only the newest pair lives). `when` stays the first use: the grace is never extended.
    Unsure (Xero's pages are silent): whether the lost pair survives a grace retry (here
    not), and whether a retry within the grace gives a new pair or the lost one again
    (here a new one)."""

    GRACE = 30 * 60.0
    IDLE = 60 * DAY

    used: dict[str, tuple[float, str]]
    issued: dict[str, float]  # refresh token -> when issued
    access_of: dict[str, str]  # refresh token -> the access token issued with it

    def __post_init__(self) -> None:
        self.used, self.issued, self.access_of = {}, {}, {}

    def consent(self, age: float = 0.0) -> tuple[str, str]:
        """A pair as the code exchange gives it, issued `age` seconds ago."""
        return self._pair(self.clock() - age)

    def answer(self, request: Received) -> tuple[int, dict[str, Any]]:
        if self.basic_credentials(request) != (self.client_id, self.client_secret):
            return 400, {"error": "invalid_client"}
        form = request.form
        if request.path == "/connect/revocation":
            self._revoke_chain(form.get("token", ""))
            return 200, {}
        if form.get("grant_type") != "refresh_token":
            return 400, {"error": "unsupported_grant_type"}
        presented, now = form.get("refresh_token", ""), self.clock()
        if presented in self.refresh_tokens:
            if now - self.issued[presented] > self.IDLE:
                return 400, {"error": "invalid_grant"}
            self.refresh_tokens.discard(presented)
            access, refresh = self._pair(now)
            self.used[presented] = (now, refresh)
            return 200, self._answer(access, refresh)
        if presented in self.used:
            first_use, lost = self.used[presented]
            if now - first_use <= self.GRACE and lost in self.refresh_tokens:
                self.refresh_tokens.discard(lost)
                self.access_tokens.pop(self.access_of.get(lost, ""), None)
                access, refresh = self._pair(now)
                self.used[presented] = (first_use, refresh)
                return 200, self._answer(access, refresh)
        return 400, {"error": "invalid_grant"}

    def _pair(self, when: float) -> tuple[str, str]:
        access, refresh = self.new_token("eyJxero"), self.new_token("xero-refresh")
        self.access_tokens[access] = when
        self.refresh_tokens.add(refresh)
        self.issued[refresh] = when
        self.access_of[refresh] = access
        return access, refresh

    def _answer(self, access: str, refresh: str) -> dict[str, Any]:
        return {
            "id_token": "eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl",
            "access_token": access,
            "expires_in": 1800,
            "token_type": "Bearer",
            "refresh_token": refresh,
            "scope": "openid profile email accounting.transactions offline_access",
        }

    def _revoke_chain(self, token: str) -> None:
        """The grant goes: every refresh token and access token of this chain."""
        self.refresh_tokens.discard(token)
        self.access_tokens.pop(self.access_of.get(token, ""), None)
        for old, (_, issued) in list(self.used.items()):
            if issued == token:
                self.used.pop(old)


PROVIDERS: dict[str, type[Network]] = {
    "threads": Threads,
    "spotify": Spotify,
    "dropbox": Dropbox,
    "xero": Xero,
}


@contextmanager
def serving(name: str) -> Iterator[tuple[Network, str]]:
    """The stand-in of provider `name` (threads, spotify, dropbox, xero), and its base URL,
    while the block runs."""
    with serve(PROVIDERS[name]()) as served:
        yield served
