"""Stand-ins for the other networks' token endpoints, each written from its provider's own
documentation (cited per class), never from our profiles: a stand-in built from a profile
would prove only that the profile agrees with itself. Each serves on 127.0.0.1, keeps the
tokens it issued, and records what it received. Standard library only.

Where a provider's documents are silent, the stand-in says "unsure" and does the least
surprising thing; our profiles must not read meaning into those answers either.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote_plus, urlsplit

P = TypeVar("P", bound="Provider")

CLIENT_ID = "app-id-4c1e"
CLIENT_SECRET = "app-secret-7d29f0b6a1c3e5"


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    form: dict[str, str]


@dataclass
class Provider:
    """The state every stand-in keeps: tokens it issued (and when), what it received."""

    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    refresh_tokens: set[str] = field(default_factory=set)
    access_tokens: dict[str, float] = field(default_factory=dict)  # token -> issued at
    received: list[Received] = field(default_factory=list)
    scripted: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    # Authorization codes handed out at consent: code -> (redirect URI, S256 challenge).
    codes: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    short_lived: dict[str, float] = field(default_factory=dict)  # Instagram's, from a code
    # A lost answer: the next call (or the next `drop_answers` calls) is processed in full
    # (a refresh rotates) and the connection then closed without a byte of answer, as a
    # network cut would lose it; such calls go into `dropped` as well as `received`.
    drop_next_answer: bool = False
    drop_answers: int = 0
    dropped: list[Received] = field(default_factory=list)

    def new_token(self, prefix: str) -> str:
        return f"{prefix}-{secrets.token_urlsafe(18)}"

    def issue_code(self, redirect_uri: str, challenge: str | None = None) -> str:
        """A code, as the consent page sends it to `redirect_uri` (single use)."""
        code = self.new_token("code")
        self.codes[code] = (redirect_uri, challenge)
        return code

    def code_accepted(self, form: dict[str, str]) -> bool:
        """RFC 6749 4.1.3 and RFC 7636 4.6: a code issued here, not used before, for this
        redirect URI, and the verifier whose base64url SHA-256 is the challenge."""
        issued = self.codes.pop(form.get("code", ""), None)
        if issued is None or issued[0] != form.get("redirect_uri"):
            return False
        challenge = issued[1]
        if challenge is None:
            return "code_verifier" not in form
        digest = hashlib.sha256(form.get("code_verifier", "").encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii") == challenge

    def answer(self, request: Received) -> tuple[int, dict[str, Any]]:
        raise NotImplementedError

    def basic_credentials(self, request: Received) -> tuple[str, str] | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Basic "):
            return None
        decoded = base64.b64decode(header[6:]).decode()
        client_id, _, secret = decoded.partition(":")
        return unquote_plus(client_id), unquote_plus(secret)


class X(Provider):
    """X's OAuth 2.0 (docs.x.com, "OAuth 2.0 Authorization Code Flow with PKCE"): POST form
    to /2/oauth2/token; a confidential client sends HTTP Basic (without it, 401
    unauthorized_client); an access token lives 7200 s; the refresh token rotates (community
    reports: the old one is refused, with 400 invalid_request). Revoke: /2/oauth2/revoke."""

    def answer(self, request: Received) -> tuple[int, dict[str, Any]]:
        if self.basic_credentials(request) != (self.client_id, self.client_secret):
            return 401, {
                "error": "unauthorized_client",
                "error_description": "Missing valid authorization header",
            }
        if request.path == "/2/oauth2/revoke":
            self.access_tokens.pop(request.form.get("token", ""), None)
            return 200, {"revoked": True}
        if request.form.get("grant_type") == "authorization_code":
            # docs.x.com: the code, redirect_uri and code_verifier (PKCE is required).
            if not self.code_accepted(request.form):
                return 400, {
                    "error": "invalid_request",
                    "error_description": "Value passed for the authorization code was invalid.",
                }
            return 200, self._issue()
        presented = request.form.get("refresh_token", "")
        if (
            request.form.get("grant_type") != "refresh_token"
            or presented not in self.refresh_tokens
        ):
            return 400, {
                "error": "invalid_request",
                "error_description": "Value passed for the token was invalid.",
            }
        self.refresh_tokens.discard(presented)
        return 200, self._issue()

    def _issue(self) -> dict[str, Any]:
        access, refresh = self.new_token("x-access"), self.new_token("x-refresh")
        self.refresh_tokens.add(refresh)
        self.access_tokens[access] = time.time()
        return {
            "token_type": "bearer",
            "expires_in": 7200,
            "access_token": access,
            "scope": "tweet.read users.read offline.access",
            "refresh_token": refresh,
        }


class Google(Provider):
    """Google's OAuth 2.0 for web server apps (developers.google.com/identity/protocols/
    oauth2/web-server): POST form to /token with client_id and client_secret in the body;
    the answer has access_token, expires_in 3599, scope, token_type and no refresh_token (the
    one from consent stays); a revoked one gives 400 invalid_grant "Token has been expired
    or revoked."; a wrong client 401 invalid_client. Revoke: POST /revoke `token`."""

    def answer(self, request: Received) -> tuple[int, dict[str, Any]]:
        if request.path == "/revoke":
            token = request.form.get("token", "")
            known = token in self.access_tokens or token in self.refresh_tokens
            self.access_tokens.pop(token, None)
            self.refresh_tokens.discard(token)
            if not known:
                return 400, {"error": "invalid_token", "error_description": "Bad Request"}
            return 200, {}
        form = request.form
        if (form.get("client_id"), form.get("client_secret")) != (
            self.client_id,
            self.client_secret,
        ):
            return 401, {"error": "invalid_client", "error_description": "Unauthorized"}
        if form.get("grant_type") == "authorization_code":
            # The web-server flow: with access_type=offline and prompt=consent at consent,
            # the answer carries a refresh token (and an id_token, whose `sub` is the user).
            if not self.code_accepted(form):
                return 400, {"error": "invalid_grant", "error_description": "Bad Request"}
            access, refresh = self.new_token("ya29"), self.new_token("1//google")
            self.access_tokens[access] = time.time()
            self.refresh_tokens.add(refresh)
            return 200, {
                "access_token": access,
                "expires_in": 3599,
                "refresh_token": refresh,
                "scope": "https://www.googleapis.com/auth/youtube.readonly",
                "token_type": "Bearer",
                "id_token": "eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl",
            }
        if form.get("refresh_token") not in self.refresh_tokens:
            return 400, {
                "error": "invalid_grant",
                "error_description": "Token has been expired or revoked.",
            }
        access = self.new_token("ya29")
        self.access_tokens[access] = time.time()
        return 200, {
            "access_token": access,
            "expires_in": 3599,
            "scope": "https://www.googleapis.com/auth/youtube.readonly",
            "token_type": "Bearer",
        }


class Instagram(Provider):
    """Instagram Login (developers.facebook.com/docs/instagram-platform/instagram-api-with-
    instagram-login/business-login): GET /refresh_access_token?grant_type=ig_refresh_token
    &access_token=...; a token at least 24 hours old and unexpired gives {access_token,
    token_type, expires_in: about 60 days}; errors are the Graph API's {"error": {message,
    type, code, fbtrace_id}} (developers.facebook.com/docs/graph-api/guides/error-handling):
    190 for an invalid or expired token. Unsure: the answer to a token under 24 hours old
    (here, the Graph API's generic code 100 with a message)."""

    # Business Login's short-lived token answer: {"data": [{...}]}; False gives the flat
    # {access_token, user_id} that Instagram's older pages show.
    code_answer_in_data = True
    user_id = 17841400008460056  # a JSON number, as Instagram sends it

    def answer(self, request: Received) -> tuple[int, dict[str, Any]]:
        if request.path == "/oauth/access_token":
            return self._short_lived(request)
        if request.path == "/access_token":
            return self._long_lived(request)
        query = request.query
        token = query.get("access_token", "")
        if request.method != "GET" or query.get("grant_type") != "ig_refresh_token":
            return 400, graph_error(100, "Unsupported request")
        if token not in self.access_tokens:
            return 400, graph_error(190, "Error validating access token: Session has expired")
        if time.time() - self.access_tokens[token] < 24 * 3600:
            return 400, graph_error(100, "The access token is not old enough to be refreshed")
        new = self.new_token("IGQV")
        self.access_tokens[new] = time.time()
        return 200, {"access_token": new, "token_type": "bearer", "expires_in": 5183944}

    def _short_lived(self, request: Received) -> tuple[int, dict[str, Any]]:
        """Business Login, step 2: POST api.instagram.com/oauth/access_token, a form of
        client_id, client_secret, grant_type=authorization_code, redirect_uri and code; a
        short-lived token (1 hour). Errors are {error_type, code, error_message}."""
        form = request.form
        if request.method != "POST" or (form.get("client_id"), form.get("client_secret")) != (
            self.client_id,
            self.client_secret,
        ):
            return 400, {
                "error_type": "OAuthException",
                "code": 400,
                "error_message": "Invalid platform app",
            }
        if form.get("grant_type") != "authorization_code" or not self.code_accepted(form):
            return 400, {
                "error_type": "OAuthException",
                "code": 400,
                "error_message": "Invalid authorization code",
            }
        short = self.new_token("IGshort")
        self.short_lived[short] = time.time()
        token = {"access_token": short, "user_id": self.user_id}
        if self.code_answer_in_data:
            token["permissions"] = "instagram_business_basic"
            return 200, {"data": [token]}
        return 200, token

    def _long_lived(self, request: Received) -> tuple[int, dict[str, Any]]:
        """Step 3: GET graph.instagram.com/access_token?grant_type=ig_exchange_token
        &client_secret=...&access_token=<short-lived>; {access_token, token_type, expires_in}."""
        query = request.query
        if request.method != "GET" or query.get("grant_type") != "ig_exchange_token":
            return 400, graph_error(100, "Unsupported request")
        if query.get("client_secret") != self.client_secret:
            return 400, graph_error(101, "Error validating client secret.")
        if self.short_lived.pop(query.get("access_token", ""), None) is None:
            return 400, graph_error(190, "Invalid OAuth access token - Cannot parse access token")
        token = self.new_token("IGQV")
        self.access_tokens[token] = time.time()
        return 200, {"access_token": token, "token_type": "bearer", "expires_in": 5183944}


def envelope(code: int, message: str, data: Any = None) -> dict[str, Any]:
    """TikTok's business APIs' answer (TikTok Shop, TikTok for Business): {code, message,
    request_id, data}, code 0 for success, under HTTP 200 either way."""
    return {
        "code": code,
        "message": message,
        "request_id": secrets.token_hex(12),
        "data": data if data is not None else {},
    }


def graph_error(code: int, message: str) -> dict[str, Any]:
    """Meta's Graph API error (developers.facebook.com/docs/graph-api/guides/error-handling)."""
    return {
        "error": {
            "message": message,
            "type": "OAuthException",
            "code": code,
            "fbtrace_id": "A" + secrets.token_hex(8),
        }
    }


class TikTokShop(Provider):
    """TikTok Shop's Partner API (partner.tiktokshop.com, "Authorization overview"): GET
    /api/v2/token/refresh?app_key&app_secret&refresh_token&grant_type=refresh_token; the
    answer is {code, message, request_id, data: {...}} with code 0 for success, and both
    *_expire_in absolute Unix timestamps. Unsure: rotation (here the refresh token rotates),
    the codes (105002 is reported for an expired token; a wrong app key gets 105001 here),
    which all come under HTTP 200."""

    def answer(self, request: Received) -> tuple[int, dict[str, Any]]:
        query = request.query
        if request.method != "GET":
            return 405, {}
        if (query.get("app_key"), query.get("app_secret")) != (self.client_id, self.client_secret):
            return 200, envelope(105001, "invalid app_key or app_secret")
        if request.path == "/api/v2/token/get":
            # The exchange: auth_code and grant_type=authorized_code, nothing else (the
            # code arrived at the service's redirect URL, which the exchange does not repeat).
            expected = {"app_key", "app_secret", "auth_code", "grant_type"}
            code = query.get("auth_code", "")
            issued = self.codes.pop(code, None)
            if set(query) != expected or query.get("grant_type") != "authorized_code":
                return 200, envelope(36004004, "invalid params")
            if issued is None:
                return 200, envelope(105003, "auth code is invalid or expired")
            return 200, self._issue()
        presented = query.get("refresh_token", "")
        if query.get("grant_type") != "refresh_token" or presented not in self.refresh_tokens:
            return 200, envelope(105002, "refresh token is expired")
        self.refresh_tokens.discard(presented)
        return 200, self._issue()

    def _issue(self) -> dict[str, Any]:
        access, refresh = self.new_token("ROW_access"), self.new_token("ROW_refresh")
        self.refresh_tokens.add(refresh)
        now = int(time.time())
        self.access_tokens[access] = now
        data = {
            "access_token": access,
            "access_token_expire_in": now + 7 * 86400,
            "refresh_token": refresh,
            "refresh_token_expire_in": now + 60 * 86400,
            "open_id": "7494shop-open-id",
            "seller_name": "Stand-in Shop",
            "seller_base_region": "GB",
            "user_type": 0,
            "granted_scopes": ["seller.authorization.info", "seller.shop.info"],
        }
        return envelope(0, "success", data)


PROVIDERS: dict[str, type[Provider]] = {
    "x": X,
    "google": Google,
    "instagram": Instagram,
    "tiktok-shop": TikTokShop,
}


class _Handler(BaseHTTPRequestHandler):
    """Parameters from the query string, and from a form or a JSON body (into `form` either
    way; the Content-Type header says which); an answer, or none for a lost one."""

    server: _Server

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        headers = {key.lower(): value for key, value in self.headers.items()}
        request = Received(
            method=self.command,
            path=parts.path,
            query={key: values[0] for key, values in parse_qs(parts.query).items()},
            headers=headers,
            form=_parameters(body, headers.get("content-type", "")),
        )
        provider = self.server.provider
        with self.server.lock:
            provider.received.append(request)
            status, payload = (
                provider.scripted.pop(0) if provider.scripted else provider.answer(request)
            )
            drop = provider.drop_next_answer or provider.drop_answers > 0
            provider.drop_next_answer = False
            provider.drop_answers = max(provider.drop_answers - 1, 0)
            if drop:
                provider.dropped.append(request)
        if drop:  # processed, then the connection goes without a byte of answer
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        data = b"" if status == 204 else json.dumps(payload).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _parameters(body: str, content_type: str) -> dict[str, str]:
    if content_type.startswith("application/json"):
        try:
            document = json.loads(body)
        except ValueError:
            return {}
        if not isinstance(document, dict):
            return {}
        return {str(key): str(value) for key, value in document.items()}
    return {key: values[0] for key, values in parse_qs(body).items()}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, provider: Provider) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.provider = provider
        self.lock = threading.Lock()


@contextmanager
def serve(provider: P) -> Iterator[tuple[P, str]]:
    """`provider` on 127.0.0.1, and its base URL, while the block runs."""
    server = _Server(provider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def serving(name: str) -> Iterator[tuple[Provider, str]]:
    """The stand-in of provider `name`, and its base URL, while the block runs."""
    with serve(PROVIDERS[name]()) as served:
        yield served
