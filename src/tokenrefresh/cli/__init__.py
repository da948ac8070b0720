"""The command line: Typer commands, each a thin adapter over one service call.

`app.py` holds the app and turns errors into exit codes; `options.py` the options several
commands share; `jobs.py`, `accounts.py` and `admin.py` the commands. Heavy modules are
imported inside the commands, so `tokenrefresh --help` starts fast, and `coercion.py`
spares the values that need no conversion Typer's pydantic (`accounts token` for scripts).
"""

from __future__ import annotations

from tokenrefresh.cli import accounts, admin, events, jobs  # noqa: F401 - registers the commands
from tokenrefresh.cli.app import app, run

__all__ = ["app", "main"]


def main() -> None:
    """The console script."""
    run()
