"""The stand-in's tokens in a file, across restarts (examples/standin.py ``--state``).

Only the stand-in's own demo tokens are in it (valid, spent and revoked, with their
open_ids), never a client secret. Written whole to a temporary file beside it, mode 0600,
then renamed over it, so a reader (or a restart after a crash) sees the old state or the
new one, never half of one. Standard library only.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["StateUnreadable", "load_state", "save_state"]

VERSION = 1
_KEYS = {"valid": dict, "refresh_owner": dict, "access_owner": dict, "newest": dict}


class StateUnreadable(Exception):
    """The state file exists but is not a state this stand-in wrote."""


def save_state(path: Path, snapshot: dict[str, Any]) -> None:
    """Replace ``path`` atomically with ``snapshot`` (mode 0600 from the start)."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump({"version": VERSION, **snapshot}, file, indent=1, sort_keys=True)
            file.flush()
            os.fsync(file.fileno())
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_state(path: Path) -> dict[str, Any] | None:
    """The snapshot kept in ``path``; None if there is no such file yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise StateUnreadable(f"cannot read {path}: {error}") from None
    try:
        state = json.loads(text)
    except ValueError:
        raise StateUnreadable(f"{path} is not JSON: not a state of this stand-in") from None
    if not isinstance(state, dict) or state.get("version") != VERSION:
        raise StateUnreadable(f"{path} is not a state of this stand-in (version {VERSION})")
    if any(not isinstance(state.get(key), kind) for key, kind in _KEYS.items()) or not (
        isinstance(state.get("revoked_access"), list)
    ):
        raise StateUnreadable(f"{path} is not a state of this stand-in: a part is missing")
    return state
