"""The bytes of a call, as a profile says to send them: pure, no HTTP.

A refresh or a revoke is a method, a URL, headers and a body: the profile's parameters, the
token under its name, and the app's credentials in the parameters, as HTTP Basic (RFC 6749
section 2.3.1: each part form-encoded, then joined by a colon and base64-encoded), or not at
all. A GET carries its parameters in the query string, credentials included where the
provider wants them there (TikTok Shop): such a URL is a secret, and nothing shows it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote_plus, urlencode, urlsplit, urlunsplit

from tokenrefresh.base.providers import Profile
from tokenrefresh.base.settings import ClientCredentials

__all__ = [
    "FORM",
    "JSON",
    "Request",
    "code_request",
    "long_lived_request",
    "refresh_request",
    "revoke_request",
    "with_base_url",
]

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


@dataclass(frozen=True)
class Request:
    method: str
    url: str = field(repr=False)  # a GET's query string may hold a secret
    headers: Mapping[str, str] = field(repr=False)
    body: bytes | None = field(repr=False)


def refresh_request(
    profile: Profile, credentials: ClientCredentials | None, token: str, url: str
) -> Request:
    """The refresh call: `token` is the one the profile presents (refresh or access)."""
    refresh = profile.refresh
    params = {**refresh.params, "grant_type": refresh.grant_type, refresh.token_name: token}
    return _request(profile, credentials, refresh.method, refresh.body, url, params)


def revoke_request(
    profile: Profile, credentials: ClientCredentials | None, token: str, url: str
) -> Request:
    """The revoke call (RFC 7009): a form POST of the token, and its hint if the profile has
    one (or a JSON body, as TikTok for Business's); or the token alone as a Bearer header
    (Dropbox's), nothing else sent."""
    revoke = profile.revoke
    if revoke.bearer:
        return Request("POST", url, {"Authorization": f"Bearer {token}"}, None)
    params = {revoke.token_name: token}
    if revoke.token_type_hint:
        params["token_type_hint"] = revoke.token_type_hint
    return _request(profile, credentials, "POST", revoke.body, url, params)


def code_request(
    profile: Profile, credentials: ClientCredentials | None, url: str, params: Mapping[str, str]
) -> Request:
    """The code exchange: a POST of `params` in a form (or JSON: TikTok for Business), or a
    GET with them in the query string (TikTok Shop), with the app's credentials as
    [consent] client_auth (else [client]) places them."""
    consent = profile.consent
    return _request(
        profile, credentials, consent.method, consent.body, url, params, auth=profile.exchange_auth
    )


def long_lived_request(
    profile: Profile, credentials: ClientCredentials | None, token: str, url: str
) -> Request:
    """Meta's second exchange (Instagram's `ig_exchange_token`): a GET presenting the
    code's short-lived token under [refresh] token_name, with the app's secret (and no
    client id) in the query string."""
    if credentials is None:
        raise ValueError(f"the {profile.name} profile's long-lived exchange needs the app's secret")
    params = {
        "grant_type": profile.consent.long_lived_grant_type,
        profile.client.secret_name: credentials.client_secret.reveal(),
        profile.refresh.token_name: token,
    }
    return _request(profile, None, "GET", "query", url, params, auth="none")


def with_base_url(url: str, base_url: str | None) -> str:
    """`url` with the scheme, host and port of `base_url` (an app's stand-in or proxy); a
    path in `base_url` goes before the profile's (as TIKTOK_API_BASE_URL always did)."""
    if not base_url:
        return url
    base, parts = urlsplit(base_url), urlsplit(url)
    path = base.path.rstrip("/") + parts.path
    return urlunsplit((base.scheme, base.netloc, path, parts.query, ""))


def _request(
    profile: Profile,
    credentials: ClientCredentials | None,
    method: str,
    body_format: str,
    url: str,
    params: Mapping[str, str],
    *,
    auth: str | None = None,  # None: the profile's [client] auth
) -> Request:
    client = profile.client
    auth = auth or client.auth
    headers: dict[str, str] = {}
    if auth != "none":
        if credentials is None:
            raise ValueError(f"the {profile.name} profile sends the app's credentials: none given")
        secret = credentials.client_secret.reveal()
        if auth == "basic":
            pair = f"{_form_part(credentials.client_key)}:{_form_part(secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(
                pair.encode("utf-8", "surrogatepass")
            ).decode("ascii")
        else:
            params = {client.id_name: credentials.client_key, client.secret_name: secret, **params}
    if body_format == "query":
        return Request(method, f"{url}?{_encoded(params)}", headers, None)
    if body_format == "json":
        body = json.dumps(params, ensure_ascii=True).encode("ascii")
        return Request(method, url, {**headers, "Content-Type": JSON}, body)
    body = _encoded(params).encode("ascii")
    return Request(method, url, {**headers, "Content-Type": FORM}, body)


def _encoded(params: Mapping[str, str]) -> str:
    """As requests would encode a form; a lone surrogate in a stored token is sent as its
    bytes (surrogatepass, as the cipher stores it) instead of raising UnicodeEncodeError."""
    return urlencode(params, encoding="utf-8", errors="surrogatepass")


def _form_part(text: str) -> str:
    return quote_plus(text, safe="", encoding="utf-8", errors="surrogatepass")
