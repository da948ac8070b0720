"""What the `accounts` commands read from a file or standard input: import lines, and an
authorization code (with its PKCE verifier)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from tokenrefresh.errors import UsageError

__all__ = ["CODE_INPUT_LIMIT", "read_code", "read_lines"]


# Characters of standard input `accounts connect` reads at most: a code (at most 1024, or
# three times that percent-encoded) and a verifier (at most 128) fit with room to spare.
CODE_INPUT_LIMIT = 4096


def read_lines(file: str) -> list[str]:
    """The lines of FILE or standard input; a UTF-8 byte order mark is ignored."""
    if file == "-":
        return (
            _stdin("give the JSON Lines on it, or a FILE")
            .read()
            .removeprefix("\ufeff")
            .splitlines()
        )
    try:
        return Path(file).read_text(encoding="utf-8-sig").splitlines()
    except OSError as error:
        raise UsageError(f"cannot read {file}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{file} is not UTF-8 text") from None


def read_code() -> tuple[str, str | None]:
    """The code and the PKCE verifier (if any) from standard input, of which at most
    CODE_INPUT_LIMIT characters are read: nothing longer is either."""
    what = "the authorization code on it (and, for PKCE, the code verifier on a second line)"
    try:
        text = _stdin(f"give {what}").read(CODE_INPUT_LIMIT + 1)
    except UnicodeDecodeError:
        raise UsageError("standard input is not UTF-8 text") from None
    if len(text) > CODE_INPUT_LIMIT:
        raise UsageError(
            f"standard input holds more than {CODE_INPUT_LIMIT} characters: give only {what}"
        )
    lines = [line.strip() for line in text.removeprefix("\ufeff").splitlines()]
    lines = [line for line in lines if line]
    if not lines or len(lines) > 2:
        raise UsageError(
            "give the authorization code on standard input (and, for PKCE, the code "
            "verifier on a second line)"
        )
    return lines[0], (lines[1] if len(lines) == 2 else None)


def _stdin(usage: str) -> TextIO:
    """Standard input; a UsageError if the command was started with it closed (`<&-`)."""
    if sys.stdin is None:
        raise UsageError(f"standard input is closed: {usage}")
    return sys.stdin
