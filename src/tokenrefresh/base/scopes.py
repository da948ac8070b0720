"""TikTok scopes: what an account's consent granted, and what a caller needs.

TikTok joins scopes with commas (`user.info.basic,video.publish`, in its token answers and
its consent URL), so a scope name never holds a comma; one never holds white space either.
A stored scope is read leniently (commas and white space both separate); a scope asked for
is checked strictly, and a comma in it is taken as a list (`--scope a,b`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["MAX_SCOPE_LENGTH", "check_scopes", "granted_scopes", "missing_scopes"]

MAX_SCOPE_LENGTH = 100  # TikTok's are under 30 characters
_SEPARATORS = re.compile(r"[,\s]+")
_SCOPE = re.compile(r"[\x21-\x7e]+")  # visible ASCII; a comma is a separator


def granted_scopes(stored: str | None) -> frozenset[str]:
    """The scopes in an account's stored `scope` (empty if it stores none)."""
    return frozenset(part for part in _SEPARATORS.split(stored or "") if part)


def missing_scopes(stored: str | None, wanted: Iterable[str]) -> frozenset[str]:
    """Those of `wanted` that the stored scope lacks."""
    return frozenset(wanted) - granted_scopes(stored)


def check_scopes(values: Iterable[str]) -> tuple[str, ...]:
    """The scope names in `values`, each split at commas, in order, without repeats; a
    ValueError naming the problem for a value that is not a string, an empty name (`a,,b`)
    or one with white space or a control character."""
    if isinstance(values, str | bytes):
        raise ValueError("scopes must be a collection of scope names, e.g. {'video.publish'}")
    names: list[str] = []
    for value in values:
        if not isinstance(value, str):
            raise ValueError(f"a scope must be a string, not a {type(value).__name__}")
        for name in value.split(","):
            if not name:
                raise ValueError(f"empty scope name in {value[:200]!r}")
            if len(name) > MAX_SCOPE_LENGTH or not _SCOPE.fullmatch(name):
                raise ValueError(
                    f"{name[:MAX_SCOPE_LENGTH]!r} is not a scope name (visible ASCII "
                    f"characters without white space, at most {MAX_SCOPE_LENGTH})"
                )
            if name not in names:
                names.append(name)
    return tuple(names)
