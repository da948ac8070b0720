"""`accounts import | list | show | token | authorize-url | connect | revoke | remove |
disable | enable`."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from tokenrefresh.base import defaults
from tokenrefresh.base.scrub import safe_text
from tokenrefresh.base.settings import Settings
from tokenrefresh.cli.account_support import (
    already_revoked,
    confirm,
    connections,
    find,
    named,
    opened,
    revoked_line,
    revoking,
    scopes_of,
    with_providers,
)
from tokenrefresh.cli.input import read_code, read_lines
from tokenrefresh.cli.options import (
    AccountArgument,
    AppOption,
    AsJson,
    HttpTimeout,
    OpenIdOption,
    Quiet,
    account_key,
    duration_option,
)
from tokenrefresh.cli.root import accounts_app, errors_as_json, handles_errors, setup
from tokenrefresh.errors import UsageError
from tokenrefresh.storage.records import AccountStatus

if TYPE_CHECKING:
    pass

__all__ = [
    "accounts_authorize_url",
    "accounts_connect",
    "accounts_disable",
    "accounts_enable",
    "accounts_import",
    "accounts_list",
    "accounts_remove",
    "accounts_revoke",
    "accounts_show",
    "accounts_token",
]


YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
ScopeOption = Annotated[
    list[str],
    typer.Option(
        "--scope",
        metavar="SCOPE",
        help="A scope the token must carry; an account whose consent lacks it is exit 1, "
        "its user must reconnect (repeat the option, or a,b).",
    ),
]
RedirectUri = Annotated[
    str,
    typer.Option(
        "--redirect-uri",
        metavar="URI",
        help="The redirect URI registered for the app, exactly as on TikTok's consent page.",
    ),
]


@accounts_app.command("import")
@handles_errors
def accounts_import(
    file: Annotated[
        str,
        typer.Argument(metavar="[FILE|-]", help="JSON Lines file; - or nothing: standard input."),
    ] = "-",
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Import even lines whose refresh token was already used, or whose pair is "
            "older than the stored one (this replaces a newer pair).",
        ),
    ] = False,
    app: AppOption = None,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Import an app's accounts from JSON Lines (its provider's token answers); all or nothing."""
    setup(quiet=quiet)
    from tokenrefresh.adapters.context import Context
    from tokenrefresh.base.apps import load_configuration
    from tokenrefresh.render import renderer
    from tokenrefresh.services.accounts import Accounts

    chosen = load_configuration().app(app)  # before reading: a wrong --app reads nothing
    lines = read_lines(file)
    with Context(Settings.from_env()) as context:
        repository = context.repository()
        cipher = context.cipher(verify_with=repository)
        report = Accounts(repository).import_lines(lines, cipher, force=force, app=chosen)
    if not quiet or as_json:
        renderer(as_json=as_json).imported(report)


@accounts_app.command("list")
@handles_errors
def accounts_list(
    status: Annotated[
        AccountStatus | None,
        typer.Option(
            "--status",
            metavar="active|expired|disabled|revoked",
            help="Only accounts with this status.",
        ),
    ] = None,
    missing_scope: Annotated[
        list[str],
        typer.Option(
            "--missing-scope",
            metavar="SCOPE",
            help="Only accounts whose consent lacks this scope (repeat the option, or a,b: "
            "those lacking any of them), e.g. video.publish.",
        ),
    ] = [],  # noqa: B006 - Typer's way of saying "none given"
    as_json: AsJson = False,
) -> None:
    """List accounts (never their tokens)."""
    setup()
    from tokenrefresh.base.clock import utcnow
    from tokenrefresh.render import renderer

    lacking = scopes_of(missing_scope, "--missing-scope")
    with opened() as (_, accounts):
        listed = accounts.list(status.value if status else None, lacking)
    renderer(as_json=as_json).accounts(with_providers(listed), utcnow())


@accounts_app.command("show")
@handles_errors
def accounts_show(
    account: AccountArgument = None,
    open_id: OpenIdOption = None,
    attempts: Annotated[
        int, typer.Option(min=0, metavar="N", help="How many recent refresh attempts to show.")
    ] = defaults.ATTEMPTS_SHOWN,
    as_json: AsJson = False,
) -> None:
    """Show one account and its recent refresh attempts (never a token)."""
    setup()
    from tokenrefresh.base.clock import utcnow
    from tokenrefresh.render import renderer

    with opened() as (_, accounts):
        details = accounts.details(find(accounts, account, open_id).id, attempts)
    [shown] = with_providers([details.account])
    renderer(as_json=as_json).account_details(replace(details, account=shown), utcnow())


@accounts_app.command("token")
@handles_errors
def accounts_token(
    account: AccountArgument = None,
    open_id: OpenIdOption = None,
    min_valid: Annotated[
        timedelta,
        duration_option(
            "The token must stay valid this long; if it would not, the account is "
            "refreshed now (needs the TikTok credentials).",
            zero_ok=True,
        ),
    ] = defaults.MIN_VALID,
    scope: ScopeOption = [],  # noqa: B006 - Typer's way of saying "none given"
    http_timeout: HttpTimeout = defaults.HTTP_TIMEOUT,
    app_name: AppOption = None,
) -> None:
    """Print the account's access token, and only it, for apps and scripts.

    The same path as the Python API's `TokenStore.access_token`: the stored token if it
    stays valid for --min-valid, else the account refreshed now (or the result of a
    refresh another process has in flight).
    """
    setup()
    account_id, open_id = account_key(account, open_id)
    if min_valid < timedelta(0):
        raise UsageError("--min-valid must not be negative")
    scopes = scopes_of(scope, "--scope")
    from tokenrefresh.adapters.context import Context
    from tokenrefresh.base.apps import load_configuration
    from tokenrefresh.services.refresh.apps import app_endpoints, key_app
    from tokenrefresh.services.refresh.on_demand import OnDemand

    if app_name is not None and account_id is not None:
        raise UsageError("--app names where a user id belongs: give it with --open-id")
    configuration = load_configuration()
    if app_name is not None:
        configuration.app(app_name)  # an app not configured: exit 2, naming the apps
    with Context(Settings.from_env(), pool_size=2) as context:
        repository = context.repository()
        cipher = context.cipher(verify_with=repository)
        endpoints = app_endpoints(
            configuration, lambda app: context.client_for(app, read_timeout=http_timeout)
        )
        token = OnDemand(repository, cipher, endpoints).access_token(
            account_id=account_id,
            open_id=open_id,
            min_valid=min_valid,
            scopes=scopes,
            app=key_app(configuration, app_name),
        )
    sys.stdout.write(token.token + "\n")


@accounts_app.command("authorize-url")
@handles_errors
def accounts_authorize_url(
    redirect_uri: RedirectUri,
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope",
            metavar="SCOPE",
            help="A scope to ask for (repeat the option, or a,b; default user.info.basic).",
        ),
    ] = [],  # noqa: B006 - Typer's way of saying "none given"
    pkce: Annotated[
        bool,
        typer.Option(
            "--pkce",
            help="Desktop and mobile apps: add a PKCE code challenge; the code verifier is "
            "printed for `accounts connect` (second line of its input).",
        ),
    ] = False,
    as_json: AsJson = False,
    app_name: AppOption = None,
) -> None:
    """Print the URL of TikTok's consent page for a new account (and its state to check).

    The page is TikTok's, or the one TIKTOK_AUTHORIZE_URL names (a local stand-in's); with
    --app, that app's provider's page (PKCE always where the provider requires it)."""
    setup()
    from tokenrefresh.adapters.tiktok.consent import (
        authorize_url,
        check_redirect_uri,
        code_challenge,
        new_code_verifier,
        new_state,
    )
    from tokenrefresh.cli.consent import app_consent, consent_app

    scopes = scopes_of(scope, "--scope")
    app = consent_app(app_name) if app_name is not None else None
    settings = Settings.from_env()
    credentials = settings.require_client_credentials() if app is None else None
    try:
        check_redirect_uri(redirect_uri)
    except ValueError as error:
        raise UsageError(f"--redirect-uri: {error}") from None
    if app is not None:
        consent = app_consent(app, redirect_uri, scopes, pkce)
        url, state, verifier = consent.url, consent.state, consent.code_verifier
    else:
        assert credentials is not None
        state = new_state()
        verifier = new_code_verifier() if pkce else None
        try:
            url = authorize_url(
                client_key=credentials.client_key,
                redirect_uri=redirect_uri,
                scopes=list(scopes) or ["user.info.basic"],
                state=state,
                code_challenge=code_challenge(verifier) if verifier else None,
                base_url=settings.authorize_url,
            )
        except ValueError as error:
            raise UsageError(str(error)) from None
    if as_json:
        document = {"url": url, "state": state, "code_verifier": verifier}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    sys.stdout.write(url + "\n")
    provider = app.profile.label if app is not None else "TikTok"
    sys.stderr.write(f"state: {state} ({provider} sends it back with the code: compare them)\n")
    if verifier:
        sys.stderr.write(f"code verifier: {verifier} (keep it for `accounts connect`)\n")


@accounts_app.command("connect")
@handles_errors
def accounts_connect(
    redirect_uri: RedirectUri,
    label: Annotated[
        str | None, typer.Option("--label", metavar="LABEL", help="A name for the account.")
    ] = None,
    as_json: AsJson = False,
    http_timeout: HttpTimeout = defaults.HTTP_TIMEOUT,
    app_name: AppOption = None,
    user_id: Annotated[
        str | None,
        typer.Option(
            "--user-id",
            metavar="USER_ID",
            help="With --app, for a provider whose answer does not name the user (X, "
            "Google): the user's id there.",
        ),
    ] = None,
) -> None:
    """Exchange an authorization code for the account's tokens, and store them.

    Reads the code from standard input (never the command line), and for desktop or mobile
    apps the PKCE code verifier as a second line. Prints the account's id and open_id,
    never a token. A used, expired or wrong code: exit 2, nothing changed. With --json a
    failure prints {"error": {"code": <exit code>, "message": "..."}} on stdout too.
    """
    setup()
    from tokenrefresh.adapters.context import Context
    from tokenrefresh.cli.consent import checked_user_option, connect_app, consent_app

    with errors_as_json(as_json):
        if app_name is None and user_id is not None:
            raise UsageError("--user-id goes with --app (TikTok's answer names the user)")
        app = consent_app(app_name) if app_name is not None else None
        user = checked_user_option(app, user_id) if app is not None else None
        code, verifier = read_code()
        with Context(Settings.from_env(), pool_size=2) as context:
            if app is None:
                connected = connections(context, http_timeout).connect(
                    code, redirect_uri=redirect_uri, code_verifier=verifier, label=label
                )
            else:
                connected = connect_app(
                    context,
                    app,
                    code,
                    redirect_uri=redirect_uri,
                    code_verifier=verifier,
                    label=label,
                    user_id=user,
                    http_timeout=http_timeout,
                )
    if as_json:
        document = {
            "account_id": connected.account_id,
            "open_id": connected.open_id,
            "created": connected.created,
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    verb = "Connected new account" if connected.created else "Reconnected account"
    typer.echo(f"{verb} {connected.account_id} ({safe_text(connected.open_id, 255)}).")


@accounts_app.command("revoke")
@handles_errors
def accounts_revoke(
    account: AccountArgument = None,
    open_id: OpenIdOption = None,
    yes: YesOption = False,
    http_timeout: HttpTimeout = defaults.HTTP_TIMEOUT,
) -> None:
    """Revoke the account's access at TikTok and erase its tokens (status revoked).

    Only a new connect (or import) brings it back. If TikTok cannot be reached, nothing
    changes (exit 1).
    """
    setup()
    with opened() as (context, accounts):
        found = find(accounts, account, open_id)
        if found.status == AccountStatus.REVOKED:
            typer.echo(already_revoked(found))
            return
        question = f"Revoke account {named(found)} at TikTok and erase its tokens?"
        confirm(yes, "revoking", question)
        revoked = revoking(context, http_timeout).revoke(found)
    typer.echo(revoked_line(revoked))


@accounts_app.command("remove")
@handles_errors
def accounts_remove(
    account: AccountArgument = None,
    open_id: OpenIdOption = None,
    yes: YesOption = False,
    revoke: Annotated[
        bool,
        typer.Option(
            "--revoke",
            help="Revoke the account's access at TikTok first (nothing is removed if that fails).",
        ),
    ] = False,
    http_timeout: HttpTimeout = defaults.HTTP_TIMEOUT,
) -> None:
    """Remove an account and its tokens (its user must reconnect to come back)."""
    setup()
    with opened() as (context, accounts):
        found = find(accounts, account, open_id)
        what = "Revoke at TikTok and remove" if revoke else "Remove"
        confirm(yes, "removing", f"{what} account {named(found)} and its tokens?")
        if revoke and found.status == AccountStatus.REVOKED:
            typer.echo(already_revoked(found))
        elif revoke:
            revoked = revoking(context, http_timeout).revoke(found)
            typer.echo(revoked_line(revoked))
        accounts.remove(found.id)
    typer.echo(f"Removed account {named(found)}.")


@accounts_app.command("disable")
@handles_errors
def accounts_disable(account: AccountArgument = None, open_id: OpenIdOption = None) -> None:
    """Exclude an account from refreshing (status disabled)."""
    _set_enabled(account, open_id, enabled=False)


@accounts_app.command("enable")
@handles_errors
def accounts_enable(account: AccountArgument = None, open_id: OpenIdOption = None) -> None:
    """Make an account active again (refreshed by the next run)."""
    _set_enabled(account, open_id, enabled=True)


def _set_enabled(account: str | None, open_id: str | None, *, enabled: bool) -> None:
    setup()
    with opened() as (_, accounts):
        changed = accounts.set_enabled(find(accounts, account, open_id).id, enabled)
    typer.echo(f"Account {named(changed)} is {changed.status}.")
