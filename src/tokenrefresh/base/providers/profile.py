"""What a provider profile says: how one network's token endpoint is called and answers.

A Profile is plain, frozen data, read from a TOML file (`load.py`) and checked there; the
client that speaks to a provider reads nothing else about it. Each section here is one
table of the file, each field one key; `profiles/oauth2.toml` sets every key and says what
each means, and the other profiles extend it with what they do differently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

__all__ = [
    "Answer",
    "BodyFormat",
    "Client",
    "ClientAuth",
    "CodeKind",
    "Consent",
    "Errors",
    "ExpiryUnit",
    "Lifetimes",
    "Method",
    "Pkce",
    "Presents",
    "Profile",
    "Refresh",
    "Revoke",
    "Rotation",
    "RotationMode",
    "Urls",
]

Method = Literal["POST", "GET"]
BodyFormat = Literal["form", "json", "query"]
ClientAuth = Literal["params", "basic", "none"]
Presents = Literal["refresh_token", "access_token"]
RotationMode = Literal["none", "rotating", "grace"]
ExpiryUnit = Literal["seconds", "timestamp"]
Pkce = Literal["required", "optional", "none"]
CodeKind = Literal["text", "number"]


@dataclass(frozen=True)
class Urls:
    """Where the calls go. `token` takes the code exchange, and the refresh unless
    `refresh` names another; None where the provider has no such endpoint (or, for a
    template, where whatever extends it must say)."""

    token: str | None
    refresh: str | None
    revoke: str | None
    authorize: str | None
    long_lived: str | None  # Instagram: the code's short-lived token is exchanged here

    @property
    def refresh_url(self) -> str | None:
        return self.refresh or self.token


@dataclass(frozen=True)
class Client:
    """The app's own credentials: in the parameters (`params`: the body of a POST, the
    query string of a GET) under these names, as HTTP Basic, or not at all."""

    auth: ClientAuth
    id_name: str
    secret_name: str


@dataclass(frozen=True)
class Refresh:
    """The refresh call: which token it presents, under which name, how it is sent, and
    when an account is due (`window` before its access token expires, once the token is
    at least `min_age` old)."""

    method: Method
    body: BodyFormat  # a GET's is its query string
    presents: Presents
    token_name: str  # the parameter the presented token goes in
    grant_type: str
    params: Mapping[str, str]  # fixed, sent with every refresh
    window: timedelta
    min_age: timedelta


@dataclass(frozen=True)
class Answer:
    """Where a token answer keeps what it says. Field names are keys of the object under
    `envelope` (the whole answer when ""); "" means the answer never carries it. Expiries
    are `seconds` from now or an absolute Unix `timestamp`. `fields`: the other keys the
    answer carries (an import may carry them; any other key is refused)."""

    envelope: str
    access_token: str
    refresh_token: str
    access_expiry: str
    access_expiry_unit: ExpiryUnit
    refresh_expiry: str
    refresh_expiry_unit: ExpiryUnit
    user_id: str
    scope: str
    fields: tuple[str, ...]


@dataclass(frozen=True)
class Rotation:
    """`none`: the stored refresh token stays (a new one is stored if one comes);
    `rotating`: each refresh gives a new one and the old is dead once the call was sent;
    `grace`: rotating, but the old one may be presented again for `grace` after a lost answer."""

    mode: RotationMode
    grace: timedelta


@dataclass(frozen=True)
class Lifetimes:
    """Longer lifetimes in an answer are cut to `max_access` and `max_refresh` (refreshing
    sooner than needed is always safe). `access`: what the provider issues an access token
    for; an imported token without `issued_at` was issued that long before it expires (None:
    not needed, as no minimum age applies). `refresh_renewed`: where an answer states no
    refresh expiry, a refresh renews the refresh token's life, to `max_refresh` from the
    refresh (a token in use lives on: Google, Xero); false, it counts from consent (Spotify)."""

    max_access: timedelta
    max_refresh: timedelta
    access: timedelta | None
    refresh_renewed: bool  # a refresh renews the refresh token's life (see below)


@dataclass(frozen=True)
class Errors:
    """How an answer names an error: `code` lists dotted paths into the answer, the first
    that holds a code of `code_kind` (text, or a whole number) wins, unless it is one of
    `success` (`code == 0`); `description[i]` describes `code[i]`; codes compare as text.
    Each code means one thing: the user must reconnect, the app's own
    credentials were refused, or try again later; any other is a failure without a verdict."""

    code_kind: CodeKind
    code: tuple[str, ...]
    description: tuple[str, ...]
    success: tuple[str, ...]
    reconnect: frozenset[str]
    app_rejected: frozenset[str]
    transient: frozenset[str]


@dataclass(frozen=True)
class Consent:
    """The consent page's parameters, and the code exchange that follows it."""

    scopes: tuple[str, ...]  # asked for unless the caller names others
    scope_separator: str
    pkce: Pkce
    client_id_name: str  # the client id's name in the consent URL
    params: Mapping[str, str]  # fixed parameters of the consent URL
    code_name: str  # the code's name in the exchange (TikTok Shop: auth_code)
    code_grant_type: str
    method: Method  # the code exchange's (TikTok Shop: a GET, its parameters in the query)
    body: BodyFormat  # the code exchange's (TikTok for Business: JSON)
    send_redirect_uri: bool  # TikTok Shop's exchange takes none
    client_auth: ClientAuth | Literal[""]  # "": as [client] (Instagram: none to refresh)
    envelope: str  # the code answer's ("": as [answer]); a list of one object is that object
    user_id: str  # the code answer's user id field ("": as [answer])
    long_lived_grant_type: str  # with urls.long_lived (Instagram: ig_exchange_token)


@dataclass(frozen=True)
class Revoke:
    """The revoke call (RFC 7009): which token goes, under which name, in a form or JSON
    body with the app's credentials; or (`bearer`) alone, as a Bearer header (Dropbox's)."""

    presents: Presents
    token_name: str
    token_type_hint: str  # "" sends none
    body: BodyFormat  # "form" or "json" (TikTok for Business)
    bearer: bool


@dataclass(frozen=True)
class Profile:
    """One provider. `label`: what messages call it ("HTTP 503 from TikTok"); `source`: the
    file it came from; `extends`: the chain of profiles it
    builds on, nearest first; `template`: a base to extend, which no app can use as it is."""

    name: str
    title: str
    label: str
    docs: tuple[str, ...]
    source: str
    extends: tuple[str, ...]
    template: bool
    urls: Urls
    client: Client
    refresh: Refresh
    answer: Answer
    rotation: Rotation
    lifetimes: Lifetimes
    errors: Errors
    consent: Consent
    revoke: Revoke

    @property
    def exchange_auth(self) -> ClientAuth:
        """How the code exchange sends the app's credentials: [consent] client_auth, else
        [client] auth (Instagram refreshes without them but exchanges a code with them)."""
        return self.consent.client_auth or self.client.auth

    @property
    def code_user_id(self) -> str:
        """The code answer's user id field: [consent] user_id, else [answer] user_id ("":
        the answer names no user, and the caller says whose account it is)."""
        return self.consent.user_id or self.answer.user_id
