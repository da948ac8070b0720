"""The apps of the multi-app tests: a configuration file of four apps, each on its own
stand-in (TikTok's, and tests/standin_providers.py's), a way to store an account of any
app as an import would, and what the stand-ins were shown."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

import standin_networks_a
import standin_networks_b
from helpers import counts
from standin import TikTokStandIn
from standin_providers import CLIENT_SECRET, Provider, serve, serving
from tokenrefresh.adapters.crypto import TokenCipher, fingerprint
from tokenrefresh.base.settings import Secret
from tokenrefresh.storage.records import NewAccount
from tokenrefresh.storage.repository import Repository

__all__ = [
    "WRONG_SECRET",
    "AddXAccounts",
    "Apps",
    "StoreAccount",
    "add_x_accounts",
    "app_config",
    "apps",
    "assert_app_rejected",
    "assert_marked_for_reconnect",
    "assert_untouched",
    "decrypted",
    "google_tokens",
    "instagram_token",
    "network_app",
    "presented_to",
    "row",
    "store_account",
    "x_tokens",
]

WRONG_SECRET = "a-wrong-secret-5150"  # what the tests give as an app's secret to be refused
SECRETS = {"X_SECRET": CLIENT_SECRET, "GOOGLE_SECRET": CLIENT_SECRET}


@dataclass
class Apps:
    """The stand-ins of the configured apps, and the configuration file naming them."""

    providers: dict[str, Provider]
    config: Path
    env: dict[str, str]


@pytest.fixture
def apps(tmp_path: Path, standin: TikTokStandIn) -> Iterator[Apps]:
    """Apps `tiktok` (the TikTok stand-in), `x`, `google` and `instagram`, each on its own
    stand-in, in one configuration file."""
    with ExitStack() as stack:
        providers, lines = {}, []
        lines += [
            "[apps.tiktok]",
            'provider = "tiktok"',
            f'client_id = "{standin.client_key}"',
            'client_secret_env = "TIKTOK_CLIENT_SECRET"',
            f'base_url = "{standin.base_url}"',
        ]
        for app, provider, secret in (
            ("x", "x", "X_SECRET"),
            ("google", "google", "GOOGLE_SECRET"),
            ("instagram", "instagram", None),
        ):
            stand_in, base_url = stack.enter_context(serving(provider))
            providers[app] = stand_in
            lines += [f"[apps.{app}]", f'provider = "{provider}"', f'base_url = "{base_url}"']
            if secret is not None:
                lines += [f'client_id = "{stand_in.client_id}"', f'client_secret_env = "{secret}"']
        config = tmp_path / "config.toml"
        config.write_text("\n".join(lines) + "\n")
        yield Apps(providers, config, {"TOKENREFRESH_CONFIG": str(config), **SECRETS})


StoreAccount = Callable[..., None]


@pytest.fixture
def store_account(engine: Engine, fernet_key: str) -> StoreAccount:
    """Store an account of `app` as an import would (tokens encrypted with the test's key)."""
    cipher = TokenCipher([Secret(fernet_key)])
    repository = Repository(engine)

    def store(
        app: str,
        user_id: str,
        *,
        access: str,
        refresh: str,
        access_in: timedelta = timedelta(minutes=10),
        refresh_in: timedelta = timedelta(days=30),
        issued: timedelta = timedelta(days=2),
    ) -> None:
        now = datetime.now(UTC)
        account = NewAccount(
            line=1,
            open_id=user_id,
            label=None,
            access_expires_at=now + access_in,
            refresh_expires_at=now + refresh_in,
            issued_at=now - issued,
            issued_at_stated=True,
            scope="",
            access_token_ciphertext=cipher.encrypt(access),
            refresh_token_ciphertext=cipher.encrypt(refresh),
            refresh_token_fingerprint=fingerprint(refresh),
        )
        repository.import_accounts([account], app=app)

    return store


def row(engine: Engine, app: str, user_id: str) -> dict[str, object]:
    with engine.connect() as connection:
        found = connection.execute(
            text("SELECT * FROM accounts WHERE app = :app AND open_id = :user"),
            {"app": app, "user": user_id},
        ).one()
    return dict(found._mapping)


def decrypted(fernet_key: str, ciphertext: object) -> str:
    assert isinstance(ciphertext, str)
    return TokenCipher([Secret(fernet_key)]).decrypt(ciphertext)


def x_tokens(provider: Provider, count: int) -> list[tuple[str, str]]:
    """(access, refresh) pairs the X stand-in issued (as at consent)."""
    pairs = []
    for _ in range(count):
        access, refresh = provider.new_token("x-access"), provider.new_token("x-refresh")
        provider.refresh_tokens.add(refresh)
        provider.access_tokens[access] = time.time()
        pairs.append((access, refresh))
    return pairs


def google_tokens(provider: Provider) -> tuple[str, str]:
    access, refresh = provider.new_token("ya29"), provider.new_token("1//google")
    provider.refresh_tokens.add(refresh)
    provider.access_tokens[access] = time.time()
    return access, refresh


def instagram_token(provider: Provider, age: timedelta) -> str:
    token = provider.new_token("IGQV")
    provider.access_tokens[token] = time.time() - age.total_seconds()
    return token


def presented_to(provider: Provider) -> list[str]:
    """Every token presented to the stand-in, whatever its parameter."""
    return [
        value
        for request in provider.received
        for name, value in (*request.form.items(), *request.query.items())
        if name in ("refresh_token", "access_token", "token")
    ]


AddXAccounts = Callable[[int], list[tuple[str, str]]]


@pytest.fixture
def add_x_accounts(apps: Apps, store_account: StoreAccount) -> AddXAccounts:
    """Issue `count` token pairs at the X stand-in and store them as the accounts
    `x-user-0`, `x-user-1`, ... of the app `x`; returns the (access, refresh) pairs."""

    def add(count: int) -> list[tuple[str, str]]:
        pairs = x_tokens(apps.providers["x"], count)
        for index, (access, refresh) in enumerate(pairs):
            store_account("x", f"x-user-{index}", access=access, refresh=refresh)
        return pairs

    return add


def app_config(
    path: Path, app: str, provider: Provider, base_url: str, *, profile: str, extra: str = ""
) -> dict[str, str]:
    """A configuration file of one app on `provider`'s stand-in (its secret in the variable
    SECRET_OF_APP), preceded by `extra` TOML; the environment that names both."""
    path.write_text(
        f"{extra}[apps.{app}]\n"
        f'provider = "{profile}"\n'
        f'client_id = "{provider.client_id}"\n'
        'client_secret_env = "SECRET_OF_APP"\n'
        f'base_url = "{base_url}"\n'
    )
    return {"TOKENREFRESH_CONFIG": str(path), "SECRET_OF_APP": provider.client_secret}


NETWORKS: dict[str, type[Provider]] = {
    **standin_networks_a.PROVIDERS,
    **standin_networks_b.PROVIDERS,
}


@contextmanager
def network_app(name: str, tmp_path: Path) -> Iterator[tuple[Any, dict[str, str]]]:
    """The stand-in of network `name` (tests/standin_networks_a.py or _b.py) and the
    environment of a configuration file naming one app, also called `name`, of the shipped
    profile `name` on it."""
    with serve(NETWORKS[name]()) as (provider, base_url):
        yield (
            provider,
            app_config(tmp_path / f"{name}.toml", name, provider, base_url, profile=name),
        )


def assert_untouched(before: dict[str, object], after: dict[str, object]) -> None:
    """The account's row is as it was: status, both tokens, their generation."""
    for column in ("status", "refresh_token_ciphertext", "access_token_ciphertext"):
        assert after[column] == before[column], column
    assert after["token_generation"] == before["token_generation"]


def assert_marked_for_reconnect(
    result: Any, engine: Engine, app: str, user: str, message: str
) -> None:
    """The run's one account was marked for its user to reconnect (exit 1), and why."""
    assert result.exit_code == 1, result.stderr
    assert result.json()["counts"] == counts(expired=1)
    stored = row(engine, app, user)
    assert (stored["status"], stored["last_error"]) == ("expired", message)


def assert_app_rejected(result: Any, config: Path, label: str, said: str) -> None:
    """Exit 3, the run stopped for the app, the message naming where the credentials come
    from and what the provider said; no secret shown."""
    app = config.stem
    where = f"{config}: [apps.{app}]"
    message = (
        f"{label} rejected the app's credentials (client_id / the variable SECRET_OF_APP "
        f"({where} client_secret_env) of app '{app}' in {where}), so the run stopped and no "
        f"account was marked. {label} said: {said}"
    )
    assert result.exit_code == 3, result.stderr
    stopped = result.json()["stopped"]
    assert (stopped["reason"], stopped["message"]) == ("client_rejected", message)
    assert result.stderr == f"error: {message}\n"
    assert result.json()["counts"]["refreshed"] == 0
    assert WRONG_SECRET not in result.stdout + result.stderr
