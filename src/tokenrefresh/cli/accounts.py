"""`accounts import | list | show | token | remove | disable | enable`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tokenrefresh import defaults
from tokenrefresh.cli.app import accounts_app, handles_errors, setup
from tokenrefresh.cli.options import AsJson, Quiet
from tokenrefresh.errors import UsageError
from tokenrefresh.scrub import safe_text
from tokenrefresh.settings import Settings
from tokenrefresh.storage.records import AccountStatus

if TYPE_CHECKING:
    from tokenrefresh.storage.records import AccountView

__all__ = [
    "accounts_disable",
    "accounts_enable",
    "accounts_import",
    "accounts_list",
    "accounts_remove",
    "accounts_show",
    "accounts_token",
]


AccountId = Annotated[int, typer.Argument(metavar="ID")]


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
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Import accounts from JSON Lines (TikTok token response shape); all or nothing."""
    setup(quiet=quiet)
    from tokenrefresh.accounts import Accounts
    from tokenrefresh.context import Context
    from tokenrefresh.render import renderer

    lines = _read_lines(file)
    with Context(Settings.from_env()) as context:
        repository = context.repository()
        cipher = context.cipher(verify_with=repository)
        report = Accounts(repository).import_lines(lines, cipher, force=force)
    if not quiet or as_json:
        renderer(as_json=as_json).imported(report)


def _read_lines(file: str) -> list[str]:
    """The lines of FILE or standard input; a UTF-8 byte order mark is ignored."""
    if file == "-":
        return sys.stdin.read().removeprefix("\ufeff").splitlines()
    try:
        return Path(file).read_text(encoding="utf-8-sig").splitlines()
    except OSError as error:
        raise UsageError(f"cannot read {file}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{file} is not UTF-8 text") from None


@accounts_app.command("list")
@handles_errors
def accounts_list(
    status: Annotated[
        AccountStatus | None, typer.Option("--status", help="Only accounts with this status.")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """List accounts (never their tokens)."""
    setup()
    from tokenrefresh.accounts import Accounts
    from tokenrefresh.clock import utcnow
    from tokenrefresh.context import Context
    from tokenrefresh.render import renderer

    with Context(Settings.from_env()) as context:
        accounts = Accounts(context.repository()).list(status.value if status else None)
    renderer(as_json=as_json).accounts(accounts, utcnow())


@accounts_app.command("show")
@handles_errors
def accounts_show(
    account_id: AccountId,
    attempts: Annotated[
        int, typer.Option(min=0, help="How many recent refresh attempts to show.")
    ] = defaults.ATTEMPTS_SHOWN,
    as_json: AsJson = False,
) -> None:
    """Show one account and its recent refresh attempts (never a token)."""
    setup()
    from tokenrefresh.accounts import Accounts
    from tokenrefresh.clock import utcnow
    from tokenrefresh.context import Context
    from tokenrefresh.render import renderer

    with Context(Settings.from_env()) as context:
        details = Accounts(context.repository()).details(account_id, attempts)
    renderer(as_json=as_json).account_details(details, utcnow())


@accounts_app.command("token")
@handles_errors
def accounts_token(
    account_id: Annotated[int | None, typer.Argument(metavar="[ID]")] = None,
    open_id: Annotated[
        str | None, typer.Option("--open-id", help="Find the account by open_id.")
    ] = None,
) -> None:
    """Print the account's current access token, and only it, for apps and scripts."""
    setup()
    if (account_id is None) == (open_id is None):
        raise UsageError("give an account ID or --open-id, not both and not neither")
    from tokenrefresh.accounts import Accounts
    from tokenrefresh.context import Context

    with Context(Settings.from_env()) as context:
        repository = context.repository()
        cipher = context.cipher(verify_with=repository)
        accounts = Accounts(repository)
        token = accounts.access_token(accounts.get(account_id, open_id), cipher)
    sys.stdout.write(token + "\n")


@accounts_app.command("remove")
@handles_errors
def accounts_remove(
    account_id: AccountId,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove an account and its tokens (its user must reconnect to come back)."""
    setup()
    from tokenrefresh.accounts import Accounts
    from tokenrefresh.context import Context

    with Context(Settings.from_env()) as context:
        accounts = Accounts(context.repository())
        account = accounts.get(account_id)
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError("removing an account needs --yes when not run interactively")
            typer.confirm(f"Remove account {_named(account)} and its tokens?", abort=True)
        accounts.remove(account_id)
    typer.echo(f"Removed account {_named(account)}.")


@accounts_app.command("disable")
@handles_errors
def accounts_disable(account_id: AccountId) -> None:
    """Exclude an account from refreshing (status disabled)."""
    _set_enabled(account_id, enabled=False)


@accounts_app.command("enable")
@handles_errors
def accounts_enable(account_id: AccountId) -> None:
    """Make an account active again (refreshed by the next run)."""
    _set_enabled(account_id, enabled=True)


def _set_enabled(account_id: int, *, enabled: bool) -> None:
    setup()
    from tokenrefresh.accounts import Accounts
    from tokenrefresh.context import Context

    with Context(Settings.from_env()) as context:
        account = Accounts(context.repository()).set_enabled(account_id, enabled)
    typer.echo(f"Account {_named(account)} is {account.status}.")


def _named(account: AccountView) -> str:
    """`7 (abc123)`: an account as a terminal may show it (open_ids come from outside)."""
    return f"{account.id} ({safe_text(account.open_id, 255)})"
