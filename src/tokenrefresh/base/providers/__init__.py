"""Provider profiles: how each network refreshes, as data.

A profile is a TOML file in `profiles/` (shipped in the package, one per provider, each with
its sources in comments) or a `[providers.NAME]` table of the configuration file, which
extends a shipped one. `profile.py` says what a profile holds; `load.py` reads and checks
one (`checks.py`: the contradictions). Nothing here speaks HTTP: the client that does
reads a Profile and nothing else about its provider.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from importlib import resources

from tokenrefresh.base.providers.load import NAME_SHAPE, ProfileSource, resolve_profiles
from tokenrefresh.base.providers.profile import Profile
from tokenrefresh.errors import ConfigError, UsageError

__all__ = [
    "Profile",
    "ProfileSource",
    "find_profile",
    "load_profiles",
    "shipped_profile",
    "shipped_sources",
]


@functools.cache
def shipped_sources() -> Mapping[str, ProfileSource]:
    """The profiles in the package, by name (a file's name without `.toml`)."""
    folder = resources.files(__package__) / "profiles"
    sources = {}
    for entry in folder.iterdir():
        name, dot, suffix = entry.name.rpartition(".")
        if dot and suffix == "toml" and NAME_SHAPE.fullmatch(name):
            sources[name] = ProfileSource.from_toml(name, entry.read_bytes(), str(entry))
    return sources


def load_profiles(defined: Mapping[str, ProfileSource] | None = None) -> dict[str, Profile]:
    """Every shipped profile and every `defined` one (from the configuration), checked.

    A ConfigError names the file and key of the first problem; a defined profile cannot
    take a shipped one's name (extend it instead)."""
    shipped = shipped_sources()
    for name, source in (defined or {}).items():
        if name in shipped:
            raise ConfigError(
                f"{source.where}: {name!r} is a shipped profile: give yours another name "
                f'and extends = "{name}"'
            )
    return resolve_profiles({**shipped, **(defined or {})})


@functools.cache
def shipped_profile(name: str) -> Profile:
    """One shipped profile (the TikTok client reads `tiktok`), loaded once a process."""
    return load_profiles()[name]


def find_profile(profiles: Mapping[str, Profile], name: str) -> Profile:
    """The profile called `name`; a UsageError listing the known ones if there is none."""
    if name not in profiles:
        known = ", ".join(sorted(profiles))
        raise UsageError(f"no provider profile {name!r} (known: {known})")
    return profiles[name]
