"""Connecting an account (TikTok's authorization-code exchange) and revoking one.

Connect stores the new account exactly as an import of a new consent would (an upsert by
open_id: a known account gets the new pair and is active again). Revoke asks TikTok to
revoke the account's access, then erases its tokens and marks it `revoked`: no run
refreshes it again, and only a new connect (or import) makes it active.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from tokenrefresh.adapters.crypto import TokenCipher, fingerprint
from tokenrefresh.adapters.tiktok.code_answer import checked_open_id
from tokenrefresh.adapters.tiktok.consent import check_code, check_code_verifier, check_redirect_uri
from tokenrefresh.base import defaults
from tokenrefresh.base.apps import App, Configuration
from tokenrefresh.base.clock import Clock, utcnow
from tokenrefresh.base.outcomes import (
    AppCredentialsRejected,
    ConsentEndpoint,
    RefreshFailed,
    TokenGrant,
    UnusableGrant,
    UserTokenRejected,
)
from tokenrefresh.base.providers.profile import Presents
from tokenrefresh.errors import (
    ClientRejected,
    ConfigError,
    InvalidArgument,
    MinValidUnreachable,
    ReconnectNeeded,
    TemporarilyUnavailable,
    UsageError,
)
from tokenrefresh.services.refresh.account import TIKTOK_APP, AppNames
from tokenrefresh.services.refresh.apps import app_names
from tokenrefresh.services.refresh.on_demand import OnDemand
from tokenrefresh.storage.records import AccountView, NewAccount
from tokenrefresh.storage.repository import Repository

__all__ = [
    "ConnectTarget",
    "Connected",
    "Connections",
    "RevokeEndpoint",
    "Revoked",
    "checked_user",
    "connectable",
    "revoke_endpoints",
]

log = logging.getLogger("tokenrefresh.connections")

# TikTok documents a refresh token lifetime of 365 days. When an exchange's answer states
# none, that is assumed: too short a guess would have `cleanup` mark a good account expired.
ASSUMED_REFRESH_LIFETIME = timedelta(days=365)
# Revoking needs an access token that stays valid through the call.
REVOKE_MIN_VALID = timedelta(minutes=1)
LABEL_MAX_LENGTH = 255  # accounts.label is VARCHAR(255), as `accounts import` checks


@dataclass(frozen=True)
class Connected:
    """A connected account: its id and open_id, and whether it was new. Never a token."""

    account_id: int
    open_id: str
    created: bool


@dataclass(frozen=True)
class ConnectTarget:
    """The app a connect stores its account in: its name, what messages call its provider
    and credentials, and how long a refresh token lives when the answer does not say."""

    app: str = defaults.APP
    names: AppNames = TIKTOK_APP
    refresh_lifetime: timedelta = ASSUMED_REFRESH_LIFETIME


@dataclass(frozen=True)
class Revoked:
    """A revoked account. `at_tiktok`: its provider (`provider`, TikTok for the app
    `tiktok`) confirmed the revocation (False: there was no live token left to revoke, the
    provider said it was invalid already, or it has no revoke endpoint)."""

    account_id: int
    open_id: str
    at_tiktok: bool
    provider: str = "TikTok"
    has_endpoint: bool = True  # False: the provider has none; the tokens were only erased

    @property
    def at_provider(self) -> bool:
        """`at_tiktok`, by the name that fits every provider."""
        return self.at_tiktok


class Revoker(Protocol):
    def revoke(self, token: str) -> None: ...


@dataclass(frozen=True)
class RevokeEndpoint:
    """Where an app's tokens are revoked: its client (None: the provider has no revoke
    endpoint, so revoking only forgets the tokens here), what messages call the provider,
    and which token a revoke presents."""

    client: Revoker | None
    names: AppNames
    presents: Presents = "access_token"


@dataclass(frozen=True)
class Connections:
    """Connect and revoke, over the repository and TikTok's endpoints."""

    repository: Repository
    cipher: TokenCipher
    client: ConsentEndpoint | None  # TikTok's, for connect (None: a caller that only revokes)
    tokens: OnDemand
    clock: Clock = utcnow
    # Each app's revoke endpoint (ConfigError for an app not configured); None: the app
    # `tiktok` alone, at `client`.
    revokers: Callable[[str], RevokeEndpoint] | None = None

    def connect(
        self,
        code: str,
        *,
        redirect_uri: str,
        code_verifier: str | None = None,
        label: str | None = None,
        target: ConnectTarget | None = None,
        user_id: str | None = None,
    ) -> Connected:
        """Exchange an authorization code for a token pair and store the account, in the
        app `tiktok` with TikTok's client, or in `target`'s app with its client (`client`).

        `user_id`: the user's id at the provider, for a provider whose answer names no user
        (X, Google); an answer that names one is taken as it is. A code the provider does
        not accept (used, expired, for another redirect URI, a wrong verifier) is a
        UsageError (exit 2) and changes nothing.
        """
        target = target or ConnectTarget()
        code, label = _checked(code, redirect_uri, code_verifier, label)
        if self.client is None:
            raise TypeError("connect needs TikTok's client")
        try:
            grant = self.client.exchange_code(
                code, redirect_uri=redirect_uri, code_verifier=code_verifier
            )
        except UserTokenRejected as rejected:
            raise UsageError(
                f"{rejected.reason}; nothing was stored. Ask the user to authorize again: "
                "an authorization code works once, for a few minutes, with the redirect URI "
                "(and code verifier) it was issued for"
            ) from None
        except AppCredentialsRejected as rejected:
            raise _app_rejected(rejected, target.names) from None
        except UnusableGrant as unusable:
            raise _unusable(unusable.reason, target.names.provider) from None
        except RefreshFailed as failed:
            raise TemporarilyUnavailable(
                f"the code exchange failed: {failed.reason}; nothing was stored"
            ) from None
        return self._store(grant, label, target, user_id)

    def _store(
        self, grant: TokenGrant, label: str | None, target: ConnectTarget, user_id: str | None
    ) -> Connected:
        provider = target.names.provider
        # The client checked these; a ConsentEndpoint of another make may not have.
        if grant.refresh_token is None:
            raise _unusable(
                f"{provider}'s answer to the authorization code lacks a refresh token", provider
            )
        tokens = tuple(token for token in (grant.access_token, grant.refresh_token) if token)
        given = grant.open_id is None
        try:
            open_id = checked_open_id(user_id if given else grant.open_id, tokens)
        except ValueError as error:
            if given and user_id is not None:
                raise InvalidArgument(f"--user-id: {error}") from None
            what = "open_id" if target.app == defaults.APP else "user id"
            raise _unusable(
                f"{provider}'s answer to the authorization code carries no usable {what}: {error}",
                provider,
            ) from None
        now = self.clock()
        account = NewAccount(
            line=1,
            open_id=open_id,
            label=label,
            access_expires_at=grant.access_expires_at,
            refresh_expires_at=grant.refresh_expires_at or now + target.refresh_lifetime,
            issued_at=now,
            issued_at_stated=True,
            scope=grant.scope or "",
            access_token_ciphertext=(
                self.cipher.encrypt(grant.access_token) if grant.access_token else None
            ),
            refresh_token_ciphertext=self.cipher.encrypt(grant.refresh_token),
            refresh_token_fingerprint=fingerprint(grant.refresh_token),
        )
        try:
            counts = self.repository.import_accounts([account], force=True, app=target.app)
        except Exception:
            log.error(
                "%s issued tokens for user %s but they could not be stored: the user must "
                "authorize again",
                provider,
                open_id,
            )
            raise
        stored = self.repository.find_account(open_id, target.app)
        assert stored is not None
        return Connected(stored.id, stored.open_id, created=counts.created == 1)

    def revoke(self, account: AccountView) -> Revoked:
        """Revoke the account's access at its provider, then erase its tokens (status
        revoked). A provider without a revoke endpoint (Instagram) is not called: the
        tokens are erased here, and its user removes the app in the network's settings.

        If the provider cannot be reached, nothing changes (TemporarilyUnavailable): an
        account marked revoked whose tokens still work would be the worse mistake.
        """
        endpoint = self._revoke_endpoint(account.app)
        provider = endpoint.names.provider
        at_provider = False
        if endpoint.client is not None:
            at_provider = self._revoke_at(endpoint.client, endpoint, account)
        where = f" at {provider}" if at_provider else ""
        reason = f"revoked{where}: its user must connect again"
        self.repository.mark_revoked(account.id, reason)
        return Revoked(
            account.id, account.open_id, at_provider, provider, endpoint.client is not None
        )

    def _revoke_endpoint(self, app: str) -> RevokeEndpoint:
        if self.revokers is not None:
            return self.revokers(app)
        if app != defaults.APP:
            # Its token must never be presented to TikTok.
            raise InvalidArgument(
                f"the account belongs to app {app!r}: this caller revokes only "
                f"{defaults.APP!r} accounts; nothing was changed"
            )
        if self.client is None:
            raise TypeError("revoke needs TikTok's client, or revokers")
        return RevokeEndpoint(self.client, TIKTOK_APP)

    def _revoke_at(self, client: Revoker, endpoint: RevokeEndpoint, account: AccountView) -> bool:
        """Present the account's token to the revoke endpoint; True if it was revoked."""
        names, provider = endpoint.names, endpoint.names.provider
        if endpoint.presents == "refresh_token":
            # Under the account's lease: no refresh rotates the token meanwhile.
            with self.repository.claim(account.id, None) as claim:
                if claim is None:
                    raise _not_revoked(account, "it is being refreshed right now")
                stored = claim.account.refresh_token_ciphertext
                if stored is None:
                    return False  # erased already: nothing live to revoke
                return self._call_revoke(client, self.cipher.decrypt(stored), names, account)
        try:
            fresh = self.tokens.access_token(
                account_id=account.id, min_valid=REVOKE_MIN_VALID, app=account.app
            )
        except ReconnectNeeded:
            return False  # nothing live to revoke: the provider already refuses its tokens
        except MinValidUnreachable:
            # Refreshed moments ago, and the answer gave no usable lifetime: no token to
            # revoke with until the pacing lets the account be refreshed again.
            raise _not_revoked(
                account,
                f"it was refreshed moments ago and {provider}'s answer gave its access token "
                "no usable lifetime",
                "try again in a minute",
            ) from None
        return self._call_revoke(client, fresh.token, names, account)

    def _call_revoke(
        self, client: Revoker, token: str, names: AppNames, account: AccountView
    ) -> bool:
        try:
            client.revoke(token)
        except UserTokenRejected:
            log.info(
                "account %s: %s says its token was invalid already", account.id, names.provider
            )
            return False
        except AppCredentialsRejected as rejected:
            raise _app_rejected(rejected, names) from None
        except RefreshFailed as failed:
            raise _not_revoked(account, failed.reason) from None
        return True


def _not_revoked(account: AccountView, why: str, then: str = "try again") -> TemporarilyUnavailable:
    return TemporarilyUnavailable(
        f"revoking account {account.id} failed: {why}; nothing was changed, {then}",
        account_id=account.id,
        open_id=account.open_id,
    )


def connectable(app: App) -> ConnectTarget:
    """Where a connect for `app` stores its account, if `connect` can serve the app's
    provider (InvalidArgument naming why not: its accounts are imported instead)."""
    from tokenrefresh.adapters.oauth.code import connect_refusal

    why = connect_refusal(app.profile)
    if why is not None:
        raise InvalidArgument(
            f"connecting an account of app {app.name!r} is not supported yet: {why}; import "
            f"its tokens with `tokenrefresh accounts import --app {app.name}` instead"
        )
    if not app.client_id:
        raise InvalidArgument(
            f"app {app.name!r} has no client_id ({app.source}): connect needs one"
        )
    return ConnectTarget(app.name, app_names(app), app.profile.lifetimes.max_refresh)


def checked_user(app: App, user_id: str | None) -> str | None:
    """The user id a connect for `app` is given, checked before a code is spent: required
    where the provider's answer names no user (X, Google), refused where it does (TikTok's
    open_id); InvalidArgument saying which."""
    from tokenrefresh.adapters.oauth.code import checked_user_id

    label = app.profile.label
    if app.profile.code_user_id:
        if user_id is not None:
            raise InvalidArgument(f"--user-id: {label}'s answer names the user; leave it out")
        return None
    if user_id is None:
        raise InvalidArgument(
            f"{label}'s answer to the code does not say whose account it is: give --user-id "
            f"(the user's id at {label}, as your app knows it)"
        )
    try:
        return checked_user_id(user_id, ())
    except ValueError as error:
        raise InvalidArgument(f"--user-id: {error}") from None


def revoke_endpoints(
    configuration: Configuration, build: Callable[[App], Revoker]
) -> Callable[[str], RevokeEndpoint]:
    """Each configured app's revoke endpoint, its client built by `build` when used; an app
    the configuration does not name is refused (ConfigError), never sent to another."""

    def endpoint(name: str) -> RevokeEndpoint:
        app = configuration.apps.get(name)
        if app is None:
            where = configuration.where
            raise ConfigError(
                f"the account belongs to app {name!r}, which {where} does not name: it "
                "cannot be revoked here; nothing was changed"
            )
        client = build(app) if app.profile.urls.revoke else None
        return RevokeEndpoint(client, app_names(app), app.profile.revoke.presents)

    return endpoint


def _checked(
    code: str, redirect_uri: str, code_verifier: str | None, label: str | None
) -> tuple[str, str | None]:
    """The code to send (see `check_code`) and the label to store, or an InvalidArgument
    (exit 2) naming what is wrong with the operator's input, before anything is sent: a
    code is spent at TikTok whether or not what it brings can then be stored."""
    try:
        code = check_code(code)
    except ValueError as error:
        raise InvalidArgument(str(error)) from None
    if code_verifier is not None:
        try:
            check_code_verifier(code_verifier)
        except ValueError as error:
            raise InvalidArgument(f"the code verifier is not one: {error} (RFC 7636)") from None
    try:
        check_redirect_uri(redirect_uri)
    except ValueError as error:
        raise InvalidArgument(f"--redirect-uri: {error}") from None
    if label is not None:
        label = label.strip() if isinstance(label, str) else ""
        if not label or len(label) > LABEL_MAX_LENGTH:
            raise InvalidArgument(f"--label: a label is 1 to {LABEL_MAX_LENGTH} characters")
    return code, label


def _unusable(reason: str, provider: str = "TikTok") -> ReconnectNeeded:
    user = "a usable open_id" if provider == "TikTok" else "a usable user id"
    return ReconnectNeeded(
        f"{reason}. The tokens {provider} issued cannot be stored without a refresh token and "
        f"{user}, so they were discarded and nothing was stored; the authorization "
        "code is spent: ask the user to authorize again",
        reason="unusable_grant",
    )


def _app_rejected(rejected: AppCredentialsRejected, names: AppNames = TIKTOK_APP) -> ClientRejected:
    return ClientRejected(
        f"{names.provider} rejected the app's credentials ({names.credentials}): {rejected.reason}"
    )
