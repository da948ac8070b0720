"""A run over several apps: which apps it covers, each app's plan with its own window,
concurrency and rate limit, and the accounts no configured app can refresh.

An account is only ever presented to its own app's provider: every plan here is of one
app, and an account whose app the configuration does not name is in none of them (never
refreshed, never expired; the run and `status` name its app instead).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta

from tokenrefresh.base import defaults
from tokenrefresh.base.apps import ENVIRONMENT, App, Configuration
from tokenrefresh.base.clock import Clock, utcnow
from tokenrefresh.base.outcomes import TokenEndpoint
from tokenrefresh.errors import ConfigError, UsageError
from tokenrefresh.services.refresh.account import TIKTOK_APP, AppNames
from tokenrefresh.services.refresh.plan import Plan, RefreshOptions
from tokenrefresh.storage.records import AccountStatus
from tokenrefresh.storage.repository import Repository

__all__ = [
    "AppEndpoints",
    "AppPlan",
    "OnlyDefault",
    "app_endpoints",
    "app_names",
    "app_plans",
    "chosen_apps",
    "key_app",
    "unconfigured",
    "unconfigured_apps",
]


@dataclass(frozen=True)
class AppPlan:
    """One app's part of a run, before its client is built."""

    app: App
    plan: Plan


def chosen_apps(configuration: Configuration, name: str | None) -> list[App]:
    """The apps a run covers: the one named with --app, else every configured app."""
    if name is not None:
        return [configuration.app(name)]
    return [configuration.apps[app] for app in sorted(configuration.apps)]


def app_plans(
    repository: Repository,
    options: RefreshOptions,
    configuration: Configuration,
    apps: list[App],
    clock: Clock = utcnow,
) -> list[AppPlan]:
    """A plan per app, each with that app's window, concurrency and rate limit (an option
    given to the run wins over the app's own window; the app's concurrency and rate limit
    win over the run's). Accounts named with --account-id are refused if no app here can
    refresh them; each goes to its own app's plan."""
    if not options.account_ids:
        return [AppPlan(app, _plan(repository, options, app, clock)) for app in apps]
    Plan(repository, options, clock)  # AccountNotFound for an id that does not exist
    by_app: dict[str, list[int]] = {}
    covered = {app.name for app in apps}
    for candidate in repository.candidates(options.account_ids):
        if candidate.app not in covered:
            raise _not_covered(candidate.id, candidate.app, configuration, apps)
        by_app.setdefault(candidate.app, []).append(candidate.id)
    return [
        AppPlan(app, _plan(repository, replace(options, account_ids=tuple(ids)), app, clock))
        for app in apps
        if (ids := by_app.get(app.name))
    ]


def unconfigured_apps(repository: Repository, configuration: Configuration) -> dict[str, int]:
    """The active accounts of each app the configuration does not name: nothing refreshes
    them until it does again."""
    return unconfigured(repository.accounts_by_app_status(), configuration.apps)


def unconfigured(
    by_app_status: Mapping[tuple[str, str], int], configured: Collection[str]
) -> dict[str, int]:
    """From the accounts by app and status: the active ones of each app not `configured`."""
    return {
        app: count
        for (app, status), count in by_app_status.items()
        if status == AccountStatus.ACTIVE.value and app not in configured
    }


def app_names(app: App) -> AppNames:
    """What messages call the app's provider and credentials."""
    if app.source == ENVIRONMENT:
        return TIKTOK_APP
    rotation = app.profile.rotation
    return AppNames(
        app.profile.label,
        f"{app.id_source} / {app.secret_source} of app {app.name!r} in {app.source}",
        grace=rotation.grace if rotation.mode == "grace" else timedelta(0),
        min_age=app.profile.refresh.min_age,
    )


def _plan(repository: Repository, options: RefreshOptions, app: App, clock: Clock) -> Plan:
    own = replace(
        options,
        window=options.window if options.window is not None else app.refresh_window,
        concurrency=app.concurrency or options.concurrency,
        rate_limit=app.rate_limit if app.rate_limit is not None else options.rate_limit,
        app=app.name,
        min_age=app.profile.refresh.min_age,
    )
    return Plan(repository, own, clock)


def _not_covered(
    account_id: int, app: str, configuration: Configuration, apps: list[App]
) -> ConfigError | UsageError:
    if app not in configuration.apps:
        where = configuration.where
        return ConfigError(
            f"account {account_id} belongs to app {app!r}, which {where} does not name: "
            "nothing here can refresh it (add the app, or leave the account out)"
        )
    return UsageError(
        f"account {account_id} belongs to app {app!r}, not to "
        + ", ".join(repr(each.name) for each in apps)
    )


class AppEndpoints:
    """Each configured app's endpoint, built at its first refresh (reading a fresh token
    needs no credentials); an account of an app not configured is refused (ConfigError)."""

    def __init__(
        self,
        names: Mapping[str, AppNames],
        build: Callable[[str], TokenEndpoint],
        where: str,
    ) -> None:
        self._names = names
        self._build = build
        self._where = where  # the configuration, as the refusal names it
        self._lock = threading.Lock()

    def __call__(self, app: str) -> tuple[TokenEndpoint, AppNames]:
        if app not in self._names:
            raise ConfigError(
                f"the account belongs to app {app!r}, which {self._where} does not name: "
                "its token cannot be refreshed here"
            )
        with self._lock:
            return self._build(app), self._names[app]


class OnlyDefault:
    """A bare client: the endpoint of the default app's accounts, and of none other."""

    def __init__(self, client: TokenEndpoint) -> None:
        self._client = client

    def __call__(self, app: str) -> tuple[TokenEndpoint, AppNames]:
        if app != defaults.APP:
            raise ConfigError(
                f"the account belongs to app {app!r}: this caller refreshes only "
                f"{defaults.APP!r} accounts"
            )
        return self._client, TIKTOK_APP


def app_endpoints(
    configuration: Configuration, build: Callable[[App], TokenEndpoint]
) -> AppEndpoints:
    """The endpoints of the configuration's apps, each built by `build` when first used."""
    return AppEndpoints(
        {name: app_names(app) for name, app in configuration.apps.items()},
        lambda name: build(configuration.apps[name]),
        configuration.where,
    )


def key_app(configuration: Configuration, app: str | None) -> str:
    """The app a user id belongs to: the one named, else the only configured app, else
    the default app (`tiktok`, whose user ids have always been given alone)."""
    if app is not None:
        return app
    if len(configuration.apps) == 1:
        return next(iter(configuration.apps))
    return defaults.APP
