"""What `accounts authorize-url` and `accounts connect` do for an app of the configuration
file (`--app`): that app's consent page and code exchange, as its profile says. Without
`--app` both serve the TikTok app of the environment, as they always did.

Everything an operator typed is checked before a code is spent: the app, whether `connect`
can serve its provider yet, the redirect URI, and the user id where the provider's answer
names none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tokenrefresh.errors import UsageError

if TYPE_CHECKING:
    from tokenrefresh.adapters.context import Context
    from tokenrefresh.base.apps import App
    from tokenrefresh.services.connections import Connected

__all__ = ["Consent", "app_consent", "checked_user_option", "connect_app", "consent_app"]


@dataclass(frozen=True)
class Consent:
    """A consent page's URL, the state to compare, and the PKCE verifier to keep."""

    url: str
    state: str
    code_verifier: str | None


def consent_app(name: str) -> App:
    """The app named with --app, if `connect` can serve its provider (exit 2 if not)."""
    from tokenrefresh.base.apps import load_configuration
    from tokenrefresh.services.connections import connectable

    app = load_configuration().app(name)
    connectable(app)
    return app


def app_consent(app: App, redirect_uri: str, scopes: tuple[str, ...], pkce: bool) -> Consent:
    """The consent URL of `app` (its profile's page, with its client id and scopes; PKCE
    when asked for, or always where the provider requires it)."""
    from tokenrefresh.adapters.oauth.code import consent_url
    from tokenrefresh.adapters.oauth.request import with_base_url
    from tokenrefresh.adapters.tiktok import consent as tiktok

    profile = app.profile
    if profile.urls.authorize is None:
        raise UsageError(
            f"the {profile.name} profile names no consent page: send the user to your app's "
            f"authorization link at {profile.label}, then give the code to `tokenrefresh "
            f"accounts connect --app {app.name}`"
        )
    if pkce and profile.consent.pkce == "none":
        raise UsageError(f"--pkce: {profile.label} takes no PKCE code challenge")
    assert app.client_id is not None
    page = with_base_url(profile.urls.authorize, app.base_url)
    state = tiktok.new_state()
    verifier = tiktok.new_code_verifier() if pkce or profile.consent.pkce == "required" else None
    asked = list(scopes) or list(profile.consent.scopes)
    try:
        if profile.name == "tiktok":  # TikTok's own page (its hex challenge; see consent.py)
            challenge = tiktok.code_challenge(verifier) if verifier else None
            url = tiktok.authorize_url(
                client_key=app.client_id,
                redirect_uri=redirect_uri,
                scopes=asked,
                state=state,
                code_challenge=challenge,
                base_url=page,
            )
        else:  # RFC 7636: the S256 challenge in base64url
            challenge = tiktok.code_challenge(verifier, "base64url") if verifier else None
            url = consent_url(
                profile,
                authorize_url=page,
                client_id=app.client_id,
                redirect_uri=redirect_uri,
                scopes=asked,
                state=state,
                code_challenge=challenge,
            )
    except ValueError as error:
        raise UsageError(str(error)) from None
    return Consent(url, state, verifier)


def checked_user_option(app: App, user_id: str | None) -> str | None:
    """--user-id, checked before a code is spent (see `connections.checked_user`)."""
    from tokenrefresh.services.connections import checked_user

    return checked_user(app, user_id)


def connect_app(
    context: Context,
    app: App,
    code: str,
    *,
    redirect_uri: str,
    code_verifier: str | None,
    label: str | None,
    user_id: str | None,
    http_timeout: float,
) -> Connected:
    """Exchange the code at `app`'s provider and store the account in `app`."""
    from tokenrefresh.cli.account_support import on_demand
    from tokenrefresh.services.connections import Connections, connectable

    repository = context.repository()
    cipher = context.cipher(verify_with=repository)
    client = context.client_for(app, read_timeout=http_timeout, consent=True)
    tokens = on_demand(context, repository, cipher, http_timeout)
    target = connectable(app)
    return Connections(repository, cipher, client, tokens).connect(
        code,
        redirect_uri=redirect_uri,
        code_verifier=code_verifier,
        label=label,
        target=target,
        user_id=user_id,
    )
