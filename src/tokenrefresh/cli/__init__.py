"""The command line: Typer commands, each a thin adapter over one service call.

`root.py` holds the app and turns errors into exit codes; `options.py` the options several
commands share; `jobs.py`, `accounts.py`, `admin.py` and `events.py` the commands. Heavy
modules are imported inside the commands, so `tokenrefresh --help` starts fast;
`coercion.py` spares the values that need no conversion Typer's pydantic. `quick.py`
answers `accounts token` for a fresh token before Typer is even imported (for scripts).

This package imports nothing at first: `main` and the `app` attribute load what they need.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer

__all__ = ["app", "main"]


def main() -> None:
    """The console script: the quick path if it can answer, else the Typer app."""
    from tokenrefresh.cli.quick import answered

    try:
        if answered(sys.argv[1:]):
            return
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    _typer_app()
    from tokenrefresh.cli.root import run

    run()


def _typer_app() -> typer.Typer:
    """The app with every command registered."""
    from tokenrefresh.cli import accounts, admin, events, jobs, providers  # noqa: F401 - registers
    from tokenrefresh.cli.root import app

    return app


def __getattr__(name: str) -> Any:
    """`from tokenrefresh.cli import app`: the Typer app, for CliRunner and embedding."""
    if name == "app":
        return _typer_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
