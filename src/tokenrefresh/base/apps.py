"""Apps: which provider each of an operator's apps uses, with which credentials.

Without a configuration file nothing changes: TIKTOK_CLIENT_KEY, TIKTOK_CLIENT_SECRET and
TIKTOK_API_BASE_URL make one app named `tiktok` with the `tiktok` profile. With one (the
file TOKENREFRESH_CONFIG names, else DEFAULT_CONFIG if it exists), the file lists every app:

    [apps.x-main]
    provider = "x"
    client_id = "..."
    client_secret_env = "X_MAIN_CLIENT_SECRET"    # or client_secret_file = "/run/secrets/x"

    [providers.idp]                                # a provider that is not shipped
    extends = "oauth2"
    urls.token = "https://idp.example/oauth/token"

A secret is never written in the file, only where to find it; it is read when the app is
used (`App.credentials`), so a command that does not call the provider does not need it.
Every problem is a ConfigError naming the file, the table and the key.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from tokenrefresh.base import defaults
from tokenrefresh.base.durations import parse_duration
from tokenrefresh.base.envfile import read_small_file
from tokenrefresh.base.providers import ProfileSource, load_profiles
from tokenrefresh.base.providers.load import NAME_SHAPE, parse_toml
from tokenrefresh.base.providers.profile import Profile
from tokenrefresh.base.scrub import register_secret
from tokenrefresh.base.settings import ClientCredentials, Secret, Settings, validate_url
from tokenrefresh.errors import ConfigError, UsageError

__all__ = [
    "CONFIG",
    "DEFAULT_APP",
    "ENVIRONMENT",
    "App",
    "Configuration",
    "config_path",
    "configured_profiles",
    "default_config_path",
    "environment_configuration",
    "load_configuration",
    "providers_by_app",
]

CONFIG = "TOKENREFRESH_CONFIG"
DEFAULT_APP = defaults.APP  # the app of a configuration without a file
MAX_APPS = 1000
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_CLIENT_ID = re.compile(r"[!-~]{1,255}")
APP_KEYS = (
    "provider",
    "client_id",
    "client_secret_env",
    "client_secret_file",
    "base_url",
    "window",
    "concurrency",
    "rate_limit",
)


ENVIRONMENT = "the environment"  # the source of the one app defined without a file


@dataclass(frozen=True)
class App:
    """One app: a provider's profile, the app's client id and where its secret is, and the
    per-app overrides (None: the profile's window, the run's concurrency and rate limit)."""

    name: str
    profile: Profile
    client_id: str | None
    secret_source: str  # where the secret comes from, as errors name it
    source: str  # ENVIRONMENT, or "FILE: [apps.NAME]"
    id_source: str = "client_id"  # where the client id comes from, as errors name it
    base_url: str | None = None
    window: timedelta | None = None
    concurrency: int | None = None
    rate_limit: float | None = None
    _secret: Secret | None = field(default=None, repr=False, compare=False)
    _secret_env: str | None = field(default=None, repr=False)
    _secret_file: str | None = field(default=None, repr=False)
    # The environment the configuration was read from (None: os.environ, read when used).
    _environ: Mapping[str, str] | None = field(default=None, repr=False, compare=False)

    @property
    def refresh_window(self) -> timedelta:
        return self.window if self.window is not None else self.profile.refresh.window

    def credentials(
        self, environ: Mapping[str, str] | None = None, *, consent: bool = False
    ) -> ClientCredentials | None:
        """The app's client id and secret, read now; None for a provider that needs none to
        refresh (or, with `consent`, to exchange a code: Instagram needs them only there).
        A ConfigError names what is missing, and where it should be."""
        auth = self.profile.exchange_auth if consent else self.profile.client.auth
        if auth == "none":
            return None
        source = environ if environ is not None else self._environ
        secret = self._secret or self._read_secret(os.environ if source is None else source)
        if not self.client_id or secret is None:
            missing = [
                what
                for what, value in ((self.id_source, self.client_id), (self.secret_source, secret))
                if not value
            ]
            raise ConfigError(
                f"{self.source}: {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'}"
                f" not set: the {self.profile.label} app's credentials are needed to "
                + ("connect an account" if consent else "refresh")
            )
        return ClientCredentials(self.client_id, secret)

    def _read_secret(self, environ: Mapping[str, str]) -> Secret | None:
        text: str | None = None
        if self._secret_env is not None:
            text = environ.get(self._secret_env, "").strip() or None
        elif self._secret_file is not None:
            data, _ = read_small_file(self.secret_source, self._secret_file)
            try:
                text = data.decode("utf-8").strip() or None
            except UnicodeDecodeError:
                raise ConfigError(f"{self.secret_source} is not UTF-8 text") from None
        if text is None:
            return None
        register_secret(text)
        return Secret(text)


@dataclass(frozen=True)
class Configuration:
    """The apps and the profiles they may use; `path` None: from the environment alone."""

    path: str | None
    apps: Mapping[str, App]
    profiles: Mapping[str, Profile]

    def app(self, name: str | None) -> App:
        """The app called `name`; without a name, the only one (a UsageError otherwise)."""
        if name is None:
            if len(self.apps) == 1:
                return next(iter(self.apps.values()))
            raise UsageError(f"several apps are configured: name one with --app ({self._known})")
        if name not in self.apps:
            raise UsageError(f"no app {name!r} is configured ({self._known})")
        return self.apps[name]

    @property
    def where(self) -> str:
        """The configuration, as a message names it: its file, or the variable for one."""
        return self.path or f"the configuration ({CONFIG})"

    @property
    def _known(self) -> str:
        return "apps: " + ", ".join(sorted(self.apps))


def default_config_path(environ: Mapping[str, str]) -> Path:
    """$XDG_CONFIG_HOME/tokenrefresh/config.toml, ~/.config/tokenrefresh/config.toml by default."""
    base = environ.get("XDG_CONFIG_HOME", "").strip()
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "tokenrefresh" / "config.toml"


def load_configuration(environ: Mapping[str, str] | None = None) -> Configuration:
    """The apps of the configuration file, or the one app of the environment."""
    env = os.environ if environ is None else environ
    path = config_path(env)
    if path is None:
        return environment_configuration(env)
    configuration = _from_file(path)
    if environ is None:
        return configuration
    # Secrets named by variable come from the environment given, as everything else did.
    apps = {name: replace(app, _environ=environ) for name, app in configuration.apps.items()}
    return replace(configuration, apps=apps)


def providers_by_app(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each configured app's provider profile, by app name (what `accounts list` shows)."""
    return {name: app.profile.name for name, app in load_configuration(environ).apps.items()}


def configured_profiles(environ: Mapping[str, str] | None = None) -> dict[str, Profile]:
    """The shipped profiles and the configuration file's (the file checked whole)."""
    path = config_path(os.environ if environ is None else environ)
    return load_profiles() if path is None else dict(_from_file(path).profiles)


def config_path(env: Mapping[str, str]) -> str | None:
    """The file TOKENREFRESH_CONFIG names (absolute), else the default if it exists, else None."""
    named = env.get(CONFIG, "").strip()
    if named:
        if not Path(named).is_absolute():
            raise ConfigError(
                f"{CONFIG}: {named!r} is a relative path: give an absolute one (cron and "
                "services start in another directory)"
            )
        return named
    default = default_config_path(env)
    return str(default) if default.is_file() else None


def environment_configuration(env: Mapping[str, str]) -> Configuration:
    """Today's one TikTok app, from TIKTOK_CLIENT_KEY, TIKTOK_CLIENT_SECRET(_FILE) and
    TIKTOK_API_BASE_URL (read and checked by Settings, as they always were)."""
    settings = Settings.from_env(env)
    profiles = load_profiles()
    app = App(
        name=DEFAULT_APP,
        profile=profiles["tiktok"],
        client_id=settings.client_key,
        secret_source="TIKTOK_CLIENT_SECRET",  # noqa: S106 - a variable's name
        source=ENVIRONMENT,
        id_source="TIKTOK_CLIENT_KEY",
        base_url=settings.api_base_url,
        _secret=settings.client_secret,
    )
    return Configuration(None, {DEFAULT_APP: app}, profiles)


def _from_file(path: str) -> Configuration:
    """The file's configuration. Reading it is cheap, checking it is not, and an event of
    each account in a run looks up its app's provider: the same bytes are checked once."""
    data, _ = read_small_file(CONFIG, path)
    return _checked_file(path, data)


@functools.lru_cache(maxsize=4)
def _checked_file(path: str, data: bytes) -> Configuration:
    document = parse_toml(data, path)
    unknown = sorted(set(document) - {"apps", "providers"})
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r} (known: apps, providers)")
    providers = _tables(document, "providers", path)
    apps = _tables(document, "apps", path)
    profiles = load_profiles(
        {
            name: ProfileSource(name, table, f"{path}: [providers.{name}]")
            for name, table in providers.items()
        }
    )
    if not apps:
        raise ConfigError(f"{path}: no [apps.NAME] table: the configuration file lists every app")
    if len(apps) > MAX_APPS:
        raise ConfigError(f"{path}: more than {MAX_APPS} apps")
    return Configuration(
        path,
        {
            name: _app(name, table, f"{path}: [apps.{name}]", profiles)
            for name, table in apps.items()
        },
        profiles,
    )


def _tables(document: Mapping[str, Any], key: str, path: str) -> dict[str, dict[str, Any]]:
    tables = document.get(key, {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}: {key} must hold [{key}.NAME] tables")
    for name, table in tables.items():
        if not NAME_SHAPE.fullmatch(name):
            raise ConfigError(
                f"{path}: [{key}.{name}]: a name is a-z, 0-9 and -, starting with a letter"
            )
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{key}.{name}] must be a table")
    return tables


def _app(name: str, table: Mapping[str, Any], where: str, profiles: Mapping[str, Profile]) -> App:
    unknown = sorted(set(table) - set(APP_KEYS))
    if "client_secret" in unknown:
        raise ConfigError(
            f"{where}: client_secret: a secret is never written in the file: use "
            'client_secret_env = "VARIABLE" or client_secret_file = "/path"'
        )
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(APP_KEYS)})")
    provider = table.get("provider")
    if not isinstance(provider, str) or provider not in profiles:
        known = ", ".join(sorted(name for name, p in profiles.items() if not p.template))
        raise ConfigError(f"{where}: provider: must name a provider profile ({known})")
    profile = profiles[provider]
    if profile.template:
        raise ConfigError(
            f"{where}: provider: {provider!r} is a template: define a [providers.NAME] that "
            f"extends it with its URLs, and use that"
        )
    client_id = table.get("client_id")
    if client_id is not None and (
        not isinstance(client_id, str) or not _CLIENT_ID.fullmatch(client_id)
    ):
        raise ConfigError(f"{where}: client_id: must be printable text without spaces")
    secret_env, secret_file = table.get("client_secret_env"), table.get("client_secret_file")
    needs = profile.client.auth != "none"
    if needs and (client_id is None or (secret_env is None) == (secret_file is None)):
        raise ConfigError(
            f"{where}: the {profile.label} app needs client_id, and one of client_secret_env "
            "and client_secret_file"
        )
    if secret_env is not None and (
        not isinstance(secret_env, str) or not _VARIABLE.fullmatch(secret_env)
    ):
        raise ConfigError(f"{where}: client_secret_env: must be the name of a variable")
    if secret_file is not None and (
        not isinstance(secret_file, str) or not Path(secret_file).is_absolute()
    ):
        raise ConfigError(f"{where}: client_secret_file: must be an absolute path")
    source = (
        f"the variable {secret_env} ({where} client_secret_env)"
        if secret_env is not None
        else f"the file {secret_file} ({where} client_secret_file)"
    )
    return App(
        name=name,
        profile=profile,
        client_id=client_id,
        secret_source=source,
        source=where,
        base_url=_base_url(table.get("base_url"), where),
        window=_window(table.get("window"), profile, where),
        concurrency=_bounded(table.get("concurrency"), "concurrency", 1, 256, where),
        rate_limit=_rate(table.get("rate_limit"), where),
        _secret_env=secret_env,
        _secret_file=secret_file,
    )


def _base_url(value: Any, where: str) -> str | None:
    """Checked as TIKTOK_API_BASE_URL is: https (http for a loopback host), no credentials,
    query or fragment; a path is kept as a prefix of the profile's paths."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.isprintable() or len(value) > 500:
        raise ConfigError(f"{where}: base_url: must be a URL of at most 500 characters")
    return validate_url(f"{where}: base_url", value).rstrip("/")


def _window(value: Any, profile: Profile, where: str) -> timedelta | None:
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError('must be a duration in quotes, such as "90m"')
        window = parse_duration(value)
    except ValueError as problem:
        raise ConfigError(f"{where}: window: {problem}") from None
    if not timedelta(0) < window < profile.lifetimes.max_access:
        raise ConfigError(
            f"{where}: window: must be longer than 0s and shorter than the {profile.name} "
            "profile's max_access, or every run would refresh every token"
        )
    return window


def _bounded(value: Any, key: str, low: int, high: int, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where}: {key}: must be a whole number from {low} to {high}")
    return value


def _rate(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 10_000:
        raise ConfigError(f"{where}: rate_limit: must be calls per second, above 0, at most 10000")
    return float(value)
