"""Provider profiles shown: `providers list` and `providers show`, as JSON or as text.

`profile_document` is the one shape of a profile, with the keys of its TOML file (durations
as `90m`, "" for what it does not have): `show --json` prints it, `show` prints it as TOML
that can be copied into a `[providers.NAME]` table, and `list` prints a summary of it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from tokenrefresh.base.durations import format_duration
from tokenrefresh.base.providers import Profile
from tokenrefresh.render.terminal import Terminal

__all__ = ["list_json", "profile_document", "show_profile", "show_profiles"]

SECTIONS = (
    "urls",
    "client",
    "refresh",
    "answer",
    "rotation",
    "lifetimes",
    "errors",
    "consent",
    "revoke",
)


def profile_document(profile: Profile) -> dict[str, Any]:
    """The resolved profile, every key set, in its file's shape; plus where it came from."""
    document: dict[str, Any] = {
        "name": profile.name,
        "title": profile.title,
        "label": profile.label,
        "template": profile.template,
        "extends": list(profile.extends),
        "source": profile.source,
        "docs": list(profile.docs),
    }
    for section in SECTIONS:
        document[section] = {
            field.name: _value(getattr(getattr(profile, section), field.name))
            for field in dataclasses.fields(getattr(profile, section))
        }
    return document


def list_json(profiles: Sequence[Profile]) -> list[dict[str, Any]]:
    """`providers list --json`: one object per profile, by name."""
    return [
        {
            "name": profile.name,
            "title": profile.title,
            "template": profile.template,
            "extends": list(profile.extends),
            "source": profile.source,
            "refresh_url": profile.urls.refresh_url,
            "presents": profile.refresh.presents,
            "rotation": profile.rotation.mode,
            "window": format_duration(profile.refresh.window),
        }
        for profile in profiles
    ]


def show_profiles(terminal: Terminal, profiles: Sequence[Profile], *, as_json: bool) -> None:
    if as_json:
        terminal.json(list_json(profiles))
        return
    rows = [
        [
            profile.name,
            profile.title,
            "template" if profile.template else _refresh(profile),
            profile.rotation.mode,
            format_duration(profile.refresh.window),
        ]
        for profile in profiles
    ]
    terminal.table(
        f"{len(profiles)} provider profile(s)",
        ["name", "title", "refresh", "rotation", "window"],
        rows,
    )


def show_profile(terminal: Terminal, profile: Profile, *, as_json: bool) -> None:
    document = profile_document(profile)
    if as_json:
        terminal.json(document)
        return
    terminal.line(f"# {profile.name}: {profile.title}")
    terminal.line(f"# from {profile.source}")
    if profile.extends:
        terminal.line(f"# extends {' -> '.join(profile.extends)}; every key resolved below")
    terminal.line(f"template = {_toml(profile.template)}")
    terminal.line(f"title = {_toml(profile.title)}")
    terminal.line(f"label = {_toml(profile.label)}")
    terminal.line(f"docs = {_toml(document['docs'])}")
    for section in SECTIONS:
        terminal.line()
        terminal.line(f"[{section}]")
        for key, value in document[section].items():
            terminal.line(f"{key} = {_toml(value)}")


def _refresh(profile: Profile) -> str:
    """`POST form, refresh token`: how a refresh is sent, and what it presents."""
    refresh = profile.refresh
    return f"{refresh.method} {refresh.body}, {refresh.presents.replace('_', ' ')}"


def _value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, frozenset):  # error codes: numbers in their order, then words
        return sorted(value, key=lambda code: (0, int(code), "") if _number(code) else (1, 0, code))
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


def _number(code: str) -> bool:
    return code.removeprefix("-").isdigit()


def _toml(value: Any) -> str:
    """A value as TOML: strings and lists of strings (JSON's quoting is TOML's for
    printable text), booleans, and inline tables of strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        inner = ", ".join(f"{key} = {json.dumps(item)}" for key, item in value.items())
        return "{ " + inner + " }" if inner else "{}"
    return json.dumps(value)
