"""Profiles from TOML: read, resolve `extends`, check, build a Profile.

A profile file is untrusted in the way any configuration is: a typo must not become a
quiet default. So every key is known (an unknown one is an error), every value has its
type and range, a profile that extends another inherits its keys table by table (a
`params` table is replaced whole, never merged), and after that every key must be set:
`oauth2.toml` sets them all, so extending it gives a complete profile. Then the profile is
checked for contradictions (a GET with a form body, a rotation for a token that is the
access token itself, ...). Every error is a ConfigError naming the file and the key.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from tokenrefresh.base.durations import parse_duration
from tokenrefresh.base.providers.checks import check_profile
from tokenrefresh.base.providers.profile import (
    Answer,
    Client,
    Consent,
    Errors,
    Lifetimes,
    Profile,
    Refresh,
    Revoke,
    Rotation,
    Urls,
)
from tokenrefresh.errors import ConfigError

__all__ = ["MAX_PROFILE_BYTES", "NAME_SHAPE", "ProfileSource", "parse_toml", "resolve_profiles"]

NAME_SHAPE = re.compile(r"[a-z][a-z0-9-]{0,31}")
MAX_PROFILE_BYTES = 64 * 1024
MAX_EXTENDS_DEPTH = 8
_PARAMETER = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")
_CODE = re.compile(r"[!-~]{1,64}")
_SCOPE = re.compile(r"[!-~]{1,200}")
_PARAM_VALUE = re.compile(r"[ -~]{0,200}")
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})

Converter = Callable[[Any], Any]


class ProfileSource:
    """One profile's TOML table, and the file (or file and table) it came from."""

    def __init__(self, name: str, table: Mapping[str, Any], where: str) -> None:
        self.name, self.table, self.where = name, table, where

    @classmethod
    def from_toml(cls, name: str, text: bytes, where: str) -> ProfileSource:
        """A whole file that is one profile (the shipped ones)."""
        if len(text) > MAX_PROFILE_BYTES:
            raise ConfigError(f"{where}: larger than {MAX_PROFILE_BYTES // 1024} KiB")
        return cls(name, parse_toml(text, where), where)


def parse_toml(text: bytes, where: str) -> dict[str, Any]:
    """A TOML document, or a ConfigError naming `where` (a profile, the configuration file)."""
    try:
        return tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{where}: not valid TOML ({error})") from None


# ----------------------------------------------------------------------------- converters


def _text(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 80 or not value.isprintable():
        raise ValueError("must be printable text of 1 to 80 characters")
    return value


def _name(*, empty: bool = False) -> Converter:
    def convert(value: Any) -> str:
        if empty and value == "":
            return ""
        if not isinstance(value, str) or not _PARAMETER.fullmatch(value):
            raise ValueError(
                "must be a parameter name (letters, digits, _ . -; at most 64)"
                + (', or "" for none' if empty else "")
            )
        return value

    return convert


def _names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError("must be a list of names")
    return tuple(_name()(item) for item in value)


def _paths(value: Any) -> tuple[str, ...]:
    """Dotted paths into an answer (`error.code`): each part a parameter name."""
    paths = _names(value)
    for path in paths:
        if any(not part for part in path.split(".")):
            raise ValueError(f"{path!r} is not a dotted path")
    return paths


def _one_of(*choices: str) -> Converter:
    def convert(value: Any) -> str:
        if value not in choices:
            raise ValueError("must be one of " + ", ".join(f'"{choice}"' for choice in choices))
        return str(value)

    return convert


def _duration(*, empty: bool = False) -> Converter:
    def convert(value: Any) -> timedelta | None:
        if empty and value == "":
            return None
        if not isinstance(value, str):
            raise ValueError('must be a duration in quotes, such as "90m" or "60d"')
        return parse_duration(value)

    return convert


def _profile_name(value: Any) -> str:
    if not isinstance(value, str) or not NAME_SHAPE.fullmatch(value):
        raise ValueError("must be the name of a profile (a-z, 0-9 and -)")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _url(value: Any) -> str | None:
    """An https URL (http only to a loopback host), no credentials, query or fragment. The
    value is never repeated in an error: a URL with credentials or a query may hold a secret."""
    if value == "":
        return None
    if not isinstance(value, str) or len(value) > 500 or not value.isprintable():
        raise ValueError('must be a URL of at most 500 printable characters, or "" for none')
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises for a port that is not one
    except ValueError:
        raise ValueError("is not a URL") from None
    if not host or parts.scheme not in ("https", "http") or " " in value:
        raise ValueError("is not an http(s) URL with a host")
    if parts.username is not None or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError("must not carry credentials, a query or a fragment (use params)")
    if parts.scheme == "http" and host not in _LOOPBACK:
        raise ValueError("must use https (http only for a loopback host)")
    return value


def _docs(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("must be a list of URLs")
    return tuple(item for item in value if _url(item))


def _codes(value: Any) -> tuple[str, ...]:
    """Error codes as text: TikTok's are words, Meta's and TikTok Shop's numbers."""
    if not isinstance(value, list):
        raise ValueError("must be a list of error codes (text or whole numbers)")
    codes = []
    for item in value:
        if isinstance(item, int) and not isinstance(item, bool) and abs(item) < 10**12:
            codes.append(str(item))
        elif isinstance(item, str) and _CODE.fullmatch(item):
            codes.append(item)
        else:
            raise ValueError(f"{item!r} is not an error code (text without spaces, or a number)")
    return tuple(codes)


def _code_set(value: Any) -> frozenset[str]:
    return frozenset(_codes(value))


def _scopes(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(
        isinstance(item, str) and _SCOPE.fullmatch(item) for item in value
    ):
        raise ValueError("must be a list of scopes (text without spaces)")
    return tuple(value)


def _separator(value: Any) -> str:
    return str(_one_of(" ", ",", "+")(value))


def _params(value: Any) -> Mapping[str, str]:
    """Fixed parameters: a table of names to short printable values."""
    if not isinstance(value, dict):
        raise ValueError('must be a table of names to values, such as { prompt = "consent" }')
    params = {}
    for key, item in value.items():
        if not _PARAMETER.fullmatch(key):
            raise ValueError(f"{key!r} is not a parameter name")
        if not isinstance(item, str) or not _PARAM_VALUE.fullmatch(item):
            raise ValueError(f"{key}: must be printable text of at most 200 characters")
        params[key] = item
    return params


# The keys of a profile, table by table; "" is the top level, whose keys are not inherited.
TOP: dict[str, Converter] = {
    "title": _text,
    "label": _text,
    "docs": _docs,
    "template": _bool,
    "extends": _profile_name,  # and then looked up among the profiles known
}
SCHEMA: dict[str, dict[str, Converter]] = {
    "urls": {
        "token": _url,
        "refresh": _url,
        "revoke": _url,
        "authorize": _url,
        "long_lived": _url,
    },
    "client": {
        "auth": _one_of("params", "basic", "none"),
        "id_name": _name(),
        "secret_name": _name(),
    },
    "refresh": {
        "method": _one_of("POST", "GET"),
        "body": _one_of("form", "json", "query"),
        "presents": _one_of("refresh_token", "access_token"),
        "token_name": _name(),
        "grant_type": _name(),
        "params": _params,
        "window": _duration(),
        "min_age": _duration(),
    },
    "answer": {
        "envelope": _name(empty=True),
        "access_token": _name(),
        "refresh_token": _name(empty=True),
        "access_expiry": _name(empty=True),
        "access_expiry_unit": _one_of("seconds", "timestamp"),
        "refresh_expiry": _name(empty=True),
        "refresh_expiry_unit": _one_of("seconds", "timestamp"),
        "user_id": _name(empty=True),
        "scope": _name(empty=True),
        "fields": _names,
    },
    "rotation": {"mode": _one_of("none", "rotating", "grace"), "grace": _duration()},
    "lifetimes": {
        "max_access": _duration(),
        "max_refresh": _duration(),
        "access": _duration(empty=True),
        "refresh_renewed": _bool,
    },
    "errors": {
        "code_kind": _one_of("text", "number"),
        "code": _paths,
        "description": _paths,
        "success": _codes,
        "reconnect": _code_set,
        "app_rejected": _code_set,
        "transient": _code_set,
    },
    "consent": {
        "scopes": _scopes,
        "scope_separator": _separator,
        "pkce": _one_of("required", "optional", "none"),
        "client_id_name": _name(),
        "params": _params,
        "code_name": _name(),
        "code_grant_type": _name(),
        "method": _one_of("POST", "GET"),
        "body": _one_of("form", "json", "query"),
        "send_redirect_uri": _bool,
        "client_auth": _one_of("", "params", "basic", "none"),
        "envelope": _name(empty=True),
        "user_id": _name(empty=True),
        "long_lived_grant_type": _name(empty=True),
    },
    "revoke": {
        "presents": _one_of("refresh_token", "access_token"),
        "token_name": _name(),
        "token_type_hint": _name(empty=True),
        "body": _one_of("form", "json"),
        "bearer": _bool,
    },
}


# ----------------------------------------------------------------------------- resolving


def resolve_profiles(sources: Mapping[str, ProfileSource]) -> dict[str, Profile]:
    """Every source as a checked Profile, each `extends` resolved among `sources`."""
    resolved: dict[str, dict[str, dict[str, Any]]] = {}
    profiles = {}
    for name in sorted(sources):
        values, chain = _values(name, sources, resolved, ())
        profiles[name] = _build(sources[name], values, chain, _inherited_label(chain, sources))
    return profiles


def _values(
    name: str,
    sources: Mapping[str, ProfileSource],
    resolved: dict[str, dict[str, dict[str, Any]]],
    seen: tuple[str, ...],
) -> tuple[dict[str, dict[str, Any]], tuple[str, ...]]:
    """The converted values of `name`'s sections, its parents' underneath; and the chain."""
    source = sources[name]
    own = _converted(source)
    parent = source.table.get("extends")
    chain: tuple[str, ...] = ()
    values: dict[str, dict[str, Any]] = {section: {} for section in SCHEMA}
    if parent is not None:
        if parent not in sources:
            known = ", ".join(sorted(sources))
            raise ConfigError(f"{source.where}: extends: no profile {parent!r} (known: {known})")
        if parent in seen or parent == name or len(seen) >= MAX_EXTENDS_DEPTH:
            raise ConfigError(f"{source.where}: extends: {' -> '.join((*seen, name, parent))}")
        if parent not in resolved:
            parent_values, _ = _values(parent, sources, resolved, (*seen, name))
            resolved[parent] = parent_values
        values = {section: dict(keys) for section, keys in resolved[parent].items()}
        chain = (parent, *_chain(parent, sources))
    for section, keys in own.items():
        values[section].update(keys)
    resolved[name] = values
    return values, chain


def _chain(name: str, sources: Mapping[str, ProfileSource]) -> tuple[str, ...]:
    parent = sources[name].table.get("extends")
    return () if parent is None else (parent, *_chain(parent, sources))


def _converted(source: ProfileSource) -> dict[str, dict[str, Any]]:
    """The source's own sections, each key known and converted; the top level checked."""
    where = source.where
    values: dict[str, dict[str, Any]] = {section: {} for section in SCHEMA}
    for key, value in source.table.items():
        if key in SCHEMA:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: [{key}] must be a table")
            for inner, item in value.items():
                values[key][inner] = _convert(SCHEMA[key], inner, item, f"{where}: [{key}]")
        elif key in TOP:
            _convert(TOP, key, value, f"{where}:")
        else:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {_known(TOP, SCHEMA)})")
    return values


def _convert(keys: Mapping[str, Converter], key: str, value: Any, where: str) -> Any:
    if key not in keys:
        raise ConfigError(f"{where} unknown key {key!r} (known: {', '.join(keys)})")
    try:
        return keys[key](value)
    except ValueError as problem:
        raise ConfigError(f"{where} {key}: {problem}") from None


def _known(*tables: Mapping[str, Any]) -> str:
    return ", ".join(key for table in tables for key in table)


def _inherited_label(chain: tuple[str, ...], sources: Mapping[str, ProfileSource]) -> str | None:
    """What messages call a provider that names no label: its nearest parent's (an
    extension of `xero` is still Xero), up to a template (one of `oauth2` is its own)."""
    for parent in chain:
        table = sources[parent].table
        if table.get("template", False):
            return None
        if "label" in table:
            return str(table["label"])
    return None


def _build(
    source: ProfileSource,
    values: dict[str, dict[str, Any]],
    chain: tuple[str, ...],
    inherited_label: str | None,
) -> Profile:
    """The Profile, once every key is set; then checked for contradictions."""
    for section, keys in SCHEMA.items():
        missing = [key for key in keys if key not in values[section]]
        if missing:
            raise ConfigError(
                f"{source.where}: [{section}] {missing[0]} is missing"
                + ("" if chain else ' (extend "oauth2" to start from the standard)')
            )
    table = source.table
    profile = Profile(
        name=source.name,
        title=table.get("title", source.name),
        label=table.get("label", inherited_label or table.get("title", source.name)),
        docs=_docs(table.get("docs", [])),
        source=source.where,
        extends=chain,
        template=table.get("template", False),
        urls=Urls(**values["urls"]),
        client=Client(**values["client"]),
        refresh=Refresh(**values["refresh"]),
        answer=Answer(**values["answer"]),
        rotation=Rotation(**values["rotation"]),
        lifetimes=Lifetimes(**values["lifetimes"]),
        errors=Errors(**values["errors"]),
        consent=Consent(**values["consent"]),
        revoke=Revoke(**values["revoke"]),
    )
    problem = check_profile(profile)
    if problem is not None:
        raise ConfigError(f"{source.where}: {problem}")
    return profile
