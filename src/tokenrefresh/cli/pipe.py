"""A reader that went away (`tokenrefresh accounts token 7 | head -c0`): the command ends
quietly with EXIT_CLOSED_PIPE, on the Typer path (`root.run`) and the quick one alike."""

from __future__ import annotations

import os
import sys

__all__ = ["EXIT_CLOSED_PIPE", "closed_pipe"]

# 128 + SIGPIPE: what a shell shows for any tool that wrote into a closed pipe (`| head -1`).
# Not 1, which says accounts failed: here the work was done, only its output went unread.
EXIT_CLOSED_PIPE = 141


def closed_pipe() -> int:
    """Nothing more can be said on stdout: point it at /dev/null, so that the interpreter's
    own last flush has nowhere to fail (the recipe in Python's `signal` documentation)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_CLOSED_PIPE
