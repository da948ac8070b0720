"""`keys generate | rotate | check` and `db upgrade | current`."""

from __future__ import annotations

from typing import Annotated

import typer

from tokenrefresh.base.settings import Settings
from tokenrefresh.cli.options import AsJson, Quiet
from tokenrefresh.cli.root import db_app, handles_errors, keys_app, setup
from tokenrefresh.errors import EXIT_CONFIG, EXIT_OK

__all__ = ["db_current", "db_upgrade", "keys_check", "keys_generate", "keys_rotate"]


@keys_app.command("generate")
@handles_errors
def keys_generate() -> None:
    """Print a new Fernet key (put it first in TOKENREFRESH_ENCRYPTION_KEYS)."""
    from tokenrefresh.adapters.crypto import generate_key

    typer.echo(generate_key())


@keys_app.command("rotate")
@handles_errors
def keys_rotate(as_json: AsJson = False, quiet: Quiet = False) -> None:
    """Re-encrypt every stored token with the first key, so older keys can be dropped."""
    setup(quiet=quiet)
    from tokenrefresh.adapters.context import Context
    from tokenrefresh.render import renderer
    from tokenrefresh.services.keys import rotate_keys

    with Context(Settings.from_env()) as context:
        report = rotate_keys(context.repository(), context.cipher())
    if not quiet or as_json:
        renderer(as_json=as_json).rotated(report)


@keys_app.command("check")
@handles_errors
def keys_check(as_json: AsJson = False) -> None:
    """Count stored tokens per key; exit 3 if any token cannot be decrypted."""
    setup()
    from tokenrefresh.adapters.context import Context
    from tokenrefresh.render import renderer
    from tokenrefresh.services.keys import check_keys

    with Context(Settings.from_env()) as context:
        report = check_keys(context.repository(), context.cipher())
    renderer(as_json=as_json).key_check(report)
    raise typer.Exit(EXIT_CONFIG if report.unreadable else EXIT_OK)


@db_app.command("upgrade")
@handles_errors
def db_upgrade(
    quiet: Quiet = False,
    create: Annotated[
        bool,
        typer.Option(
            "--create",
            help="Create the SQLite file named in TOKENREFRESH_DATABASE_URL if it does not "
            "exist (mode 0600). Without it a missing file is an error, so that a mistyped "
            "path never becomes an empty database.",
        ),
    ] = False,
) -> None:
    """Create the schema or migrate it to the newest revision."""
    setup(quiet=quiet)
    from tokenrefresh.adapters.context import Context
    from tokenrefresh.services.migrate import upgrade_schema

    with Context(Settings.from_env()) as context:
        report = upgrade_schema(context, create=create)
    if not quiet:
        if report.before == report.revision:
            typer.echo(f"The schema of {report.where} is current (revision {report.revision}).")
        else:
            typer.echo(
                f"Upgraded {report.where} from {report.before or 'nothing'} to revision "
                f"{report.revision}."
            )


@db_app.command("current")
@handles_errors
def db_current(as_json: AsJson = False) -> None:
    """Show the schema revision of the database and the one this version needs
    (exit 3 if they differ)."""
    setup()
    from tokenrefresh.adapters.context import Context
    from tokenrefresh.render.terminal import Terminal
    from tokenrefresh.services.migrate import schema_status

    with Context(Settings.from_env()) as context:
        report = schema_status(context)
    if as_json:
        document = {
            "database": report.where,
            "revision": report.revision,
            "head": report.head,
            "current": report.is_current,
        }
        Terminal().json(document)
    else:
        typer.echo(
            f"{report.where}: revision {report.revision or 'none'} "
            f"(this tokenrefresh needs {report.head})"
        )
    raise typer.Exit(EXIT_OK if report.is_current else EXIT_CONFIG)
