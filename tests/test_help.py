"""`--help` reads as a user expects: flags without a value placeholder, every value
option with a word for its value, defaults as they are written (`1h30m`, not
`(1h30m)` or `1:30:00`), on the Typer and click versions we install. (Arguments keep
Typer's own `ID <int>`: the metavar already says what goes there.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tokenrefresh.cli import app


def commands(command: Any = None, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    command = command or typer.main.get_command(app)
    yield path
    for name, sub in (getattr(command, "commands", None) or {}).items():
        yield from commands(sub, (*path, name))


ALL = sorted(commands())


@pytest.mark.parametrize("path", ALL, ids=[" ".join(p) or "tokenrefresh" for p in ALL])
def test_help_has_no_type_placeholders_and_plain_defaults(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    text = result.output
    options = text.split("Options:", 1)[-1]
    # No <bool>, <int range>, <list[int]>, <path> after an option (`1<=x<=256` is a range).
    assert re.search(r"<[a-z]", options) is None, options
    assert "[default: (" not in text, text
    assert "default: 0:" not in text, text  # a timedelta shown raw
    assert "╭" not in text  # plain help, the same on every version
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("--dry-run", "--json", "--yes", "--force", "--help")):
            assert stripped.split()[1:2] != ["BOOLEAN"], line


def test_durations_show_their_defaults_as_written() -> None:
    result = CliRunner().invoke(app, ["refresh", "--help"], env={"COLUMNS": "200"})
    flowed = " ".join(result.output.split())
    assert "--window DURATION" in flowed
    assert "default: 1h30m]" in flowed
    assert "default: 25m]" in flowed
    assert "--concurrency N" in flowed
    assert "--account-id ID" in flowed


def test_status_help_says_what_the_window_counts() -> None:
    result = CliRunner().invoke(app, ["status", "--help"], env={"COLUMNS": "200"})
    flowed = " ".join(result.output.split())
    assert "Count the access tokens that expire within this time." in flowed
    assert "Refresh access tokens" not in flowed


FIRST_RUN = [
    "  A first run needs, from the environment (each also as NAME_FILE, a file):",
    "    TOKENREFRESH_ENCRYPTION_KEYS  the key(s): tokenrefresh keys generate",
    "    TOKENREFRESH_DATABASE_URL     optional: SQLite in ~/.local/share by default",
    "    TIKTOK_CLIENT_KEY             your TikTok app's client key",
    "    TIKTOK_CLIENT_SECRET          and its client secret",
    "  Secrets are never options. docs/configuration.md in the source explains each.",
]


@pytest.mark.parametrize("columns", ["80", "200"])
def test_tokenrefresh_help_names_what_a_first_run_needs_within_80_columns(columns: str) -> None:
    """As a user sees it: the console script's module in a real process, whatever the
    terminal's width (click wraps help at 80 columns at most)."""
    environment = {**os.environ, "COLUMNS": columns}
    shown = subprocess.run(
        [sys.executable, "-m", "tokenrefresh", "--help"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = shown.stdout.splitlines()
    assert lines[-len(FIRST_RUN) :] == FIRST_RUN
    assert max(len(line) for line in lines) <= 80, shown.stdout
    assert shown.stderr == ""


def test_the_docs_have_the_page_the_help_points_to() -> None:
    page = Path(__file__).parent.parent / "docs" / "configuration.md"
    section = page.read_text(encoding="utf-8")
    assert section.startswith("# Configuration\n")
    for name in ("TOKENREFRESH_ENCRYPTION_KEYS", "TOKENREFRESH_DATABASE_URL"):
        assert f"| `{name}` |" in section
    assert "| `TIKTOK_CLIENT_KEY`, `TIKTOK_CLIENT_SECRET` |" in section
    assert "`_FILE`" in section
