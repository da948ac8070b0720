"""What some providers need beyond a profile's data (issue 21): `status` says that a token
refreshed with itself (Instagram, Threads) is dead once it expires unrefreshed; Xero's grace
turns a lost answer into a stored pair, where every other rotating provider's lost answer
stays what it was; LinkedIn's refresh expiry is the answer's, never extended, and warned of.
Both databases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import Result
from sqlalchemy import Engine
from typer.testing import CliRunner

from apps_setup import (
    Apps,
    StoreAccount,
    app_config,
    decrypted,
    instagram_token,
    presented_to,
    row,
)
from conftest import Cli
from helpers import attempts, counts, table
from standin_networks_a import LinkedIn
from standin_networks_b import Xero, serving
from standin_providers import serve
from tokenrefresh.cli import app
from tokenrefresh.services.refresh.account import GRACE_RETRIES

REDIRECT = "https://app.example/callback"


def test_status_says_a_token_refreshed_with_itself_dies_unrefreshed(
    cli: Cli, apps: Apps, engine: Engine
) -> None:
    note = (
        "app 'instagram' (Instagram): a token not refreshed within 60d is dead, and its user "
        "must connect again; each is refreshed 14d before it expires, once it is 1d old"
    )

    shown = cli("status", env=apps.env)
    document = cli("status", "--json", env=apps.env)

    assert shown.exit_code == 0, shown.stderr
    assert f"Note: {note}\n" in shown.stdout
    assert document.json()["notes"] == [note]  # x, google and tiktok have refresh tokens


# ----------------------------------------------------------------------------- Xero's grace


@contextmanager
def xero_app(tmp_path: Path, *, grace: bool = True) -> Iterator[tuple[Xero, dict[str, str]]]:
    """The Xero stand-in and one app on it: of the `xero` profile, or (grace=False) of a
    profile that is Xero's in every way but the grace, to show what the grace changes."""
    extra = (
        ""
        if grace
        else '[providers.xero-strict]\nextends = "xero"\nrotation.mode = "rotating"\n'
        'rotation.grace = "0s"\n'
    )
    with serving("xero") as (provider, base_url):
        assert isinstance(provider, Xero)
        profile = "xero" if grace else "xero-strict"
        yield (
            provider,
            app_config(
                tmp_path / "config.toml", "xero", provider, base_url, profile=profile, extra=extra
            ),
        )


def _outcomes(engine: Engine, user: str) -> list[tuple[str, int | None]]:
    return [
        (attempt["outcome"], attempt["http_status"])
        for attempt in attempts(engine, int(str(row(engine, "xero", user)["id"])))
    ]


@pytest.mark.parametrize("lost", [1, 3], ids=["one-lost", "as-many-lost-as-retries"])
def test_xero_a_lost_answer_is_presented_again_inside_the_grace_and_the_pair_stored(
    cli: Cli,
    store_account: StoreAccount,
    engine: Engine,
    fernet_key: str,
    tmp_path: Path,
    lost: int,
) -> None:
    with xero_app(tmp_path) as (xero, env):
        access, refresh = xero.consent()
        store_account("xero", "org-1", access=access, refresh=refresh)
        xero.drop_answers = lost  # processed, rotated, and the answer lost on the way
        result = cli("refresh", "--json", env=env)

    assert result.exit_code == 0, result.stderr
    assert result.json()["counts"] == counts(refreshed=1)
    assert presented_to(xero) == [refresh] * (lost + 1)  # the same token, inside the grace
    stored = row(engine, "xero", "org-1")
    # The pair of the last answer is stored: Xero's newest, the only one alive.
    assert xero.refresh_tokens == {decrypted(fernet_key, stored["refresh_token_ciphertext"])}
    assert decrypted(fernet_key, stored["access_token_ciphertext"]) in xero.access_tokens
    assert (stored["status"], stored["consecutive_failures"]) == ("active", 0)
    assert _outcomes(engine, "org-1") == [("failed", None)] * lost + [("refreshed", 200)]


def test_without_a_grace_the_same_lost_answers_end_as_they_always_did(
    cli: Cli, store_account: StoreAccount, engine: Engine, tmp_path: Path
) -> None:
    with xero_app(tmp_path, grace=False) as (xero, env):
        access, refresh = xero.consent()
        store_account("xero", "org-1", access=access, refresh=refresh)
        xero.drop_answers = 3
        result = cli("refresh", "--json", env=env)

    assert result.exit_code == 1
    assert presented_to(xero) == [refresh] * 3  # the retry policy's attempts, no more
    stored = row(engine, "xero", "org-1")
    assert stored["status"] == "active"
    assert str(stored["last_error"]).endswith(
        "Xero may have rotated the token without the answer arriving: if the next attempt "
        "is rejected, the user must reconnect"
    )


def test_xero_when_every_attempt_is_lost_the_next_comes_inside_the_grace_and_stores_the_pair(
    cli: Cli, store_account: StoreAccount, engine: Engine, fernet_key: str, tmp_path: Path
) -> None:
    with xero_app(tmp_path) as (xero, env):
        access, refresh = xero.consent()
        store_account("xero", "org-1", access=access, refresh=refresh)
        xero.drop_answers = 3 + GRACE_RETRIES  # every attempt of the run
        started = datetime.now(UTC)
        run = cli("refresh", "--json", env=env)
        failed = row(engine, "xero", "org-1")
        # An application asks for the token meanwhile, inside the grace.
        token = cli("accounts", "token", "--open-id", "org-1", "--min-valid", "20m", env=env)

    assert run.exit_code == 1
    assert presented_to(xero)[: 3 + GRACE_RETRIES] == [refresh] * (3 + GRACE_RETRIES)
    assert failed["status"] == "active"
    next_attempt = failed["next_attempt_at"]
    assert isinstance(next_attempt, datetime | str)
    when = (
        next_attempt if isinstance(next_attempt, datetime) else datetime.fromisoformat(next_attempt)
    ).replace(tzinfo=UTC)
    assert when <= started + timedelta(minutes=15)  # half the grace left, at most
    assert (
        "Xero takes the same refresh token again for 30m after a lost answer: the next "
        "attempt, after "
    ) in str(failed["last_error"])
    # The caller's refresh presents the same token again, inside the grace: the lost pair's
    # successor is stored.
    assert token.exit_code == 0, token.stderr
    stored = row(engine, "xero", "org-1")
    assert xero.refresh_tokens == {decrypted(fernet_key, stored["refresh_token_ciphertext"])}
    assert token.stdout.strip() == decrypted(fernet_key, stored["access_token_ciphertext"])


# ----------------------------------------------------------------------------- consent

# Each provider's consent page and what it requires there, from its own documents (cited in
# its profile): without these a provider issues no refresh token, or no code at all.
CONSENT = [
    ("x", "https://x.com/i/oauth2/authorize", {"scope": "tweet.read users.read offline.access"}),
    (
        "google",
        "https://accounts.google.com/o/oauth2/v2/auth",
        {"access_type": "offline", "prompt": "consent"},
    ),
    ("reddit", "https://www.reddit.com/api/v1/authorize", {"duration": "permanent"}),
    ("dropbox", "https://www.dropbox.com/oauth2/authorize", {"token_access_type": "offline"}),
    ("threads", "https://threads.net/oauth/authorize", {"scope": "threads_basic"}),
    ("linkedin", "https://www.linkedin.com/oauth/v2/authorization", {}),
    ("pinterest", "https://www.pinterest.com/oauth/", {}),
    ("spotify", "https://accounts.spotify.com/authorize", {}),
    ("zoom", "https://zoom.us/oauth/authorize", {}),
]


def authorize_url(tmp_path: Path, profile: str) -> tuple[Result, str]:
    """`accounts authorize-url --app main --json` for an app of `profile` (in process: no
    database is involved), and the app's secret, which must not be shown."""
    config = tmp_path / "config.toml"
    config.write_text(
        f'[apps.main]\nprovider = "{profile}"\nclient_id = "app-id-1"\n'
        'client_secret_env = "MAIN_SECRET"\n'
    )
    secret = "main-secret-value"
    result = CliRunner().invoke(
        app,
        ["accounts", "authorize-url", "--app", "main", "--redirect-uri", REDIRECT, "--json"],
        env={"TOKENREFRESH_CONFIG": str(config), "MAIN_SECRET": secret},
    )
    return result, secret


@pytest.mark.parametrize(("profile", "page", "required"), CONSENT, ids=[c[0] for c in CONSENT])
def test_each_providers_consent_page_asks_for_what_it_requires(
    tmp_path: Path, profile: str, page: str, required: dict[str, str]
) -> None:
    result, secret = authorize_url(tmp_path, profile)

    assert result.exit_code == 0, result.output
    url = urlsplit(json.loads(result.stdout)["url"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == page
    query = {name: values[0] for name, values in parse_qs(url.query).items()}
    assert query["client_id"] == "app-id-1"
    assert query["redirect_uri"] == REDIRECT
    assert query["response_type"] == "code"
    assert {name: query.get(name) for name in required} == required
    # PKCE where the provider requires it (X), and only with --pkce elsewhere.
    assert ("code_challenge" in query) == (profile == "x")
    assert secret not in result.output


def test_xero_asks_for_offline_access_without_which_it_gives_no_refresh_token(
    tmp_path: Path,
) -> None:
    result, _ = authorize_url(tmp_path, "xero")

    assert result.exit_code == 0, result.output
    query = parse_qs(urlsplit(json.loads(result.stdout)["url"]).query)
    assert "offline_access" in query["scope"][0].split(" ")


# ----------------------------------------------------------------------------- LinkedIn


def test_linkedin_refresh_expiry_counts_down_from_consent_and_is_warned_of(
    cli: Cli, store_account: StoreAccount, engine: Engine, tmp_path: Path
) -> None:
    with serve(LinkedIn()) as (linkedin, base_url):
        env = app_config(tmp_path / "config.toml", "li", linkedin, base_url, profile="linkedin")
        access, refresh = linkedin.consent(days_ago=355)  # consented 355 days ago: 10 left
        # Stored as an import that assumed a whole year from now would have it.
        store_account(
            "li", "member-1", access=access, refresh=refresh,
            access_in=timedelta(days=3), refresh_in=timedelta(days=365),
        )  # fmt: skip
        result = cli("refresh", "--json", env=env)

    assert result.exit_code == 0, result.stderr
    assert result.json()["counts"] == counts(refreshed=1)
    stored = row(engine, "li", "member-1")
    expiry = stored["refresh_expires_at"]
    moment = expiry if isinstance(expiry, datetime) else datetime.fromisoformat(str(expiry))
    left = moment.replace(tzinfo=UTC) - datetime.now(UTC)
    assert timedelta(days=9) < left <= timedelta(days=10)  # the answer's, not extended
    [warning] = [
        json.loads(str(event["payload"]))
        for event in table(engine, "outbox")
        if event["type"] == "account.refresh_token_expiring"
    ]
    assert warning["data"]["open_id"] == "member-1"
    assert (warning["data"]["app"], warning["data"]["provider"]) == ("li", "linkedin")


# ----------------------------------------------------------------------------- min age


def test_on_demand_never_presents_a_token_younger_than_its_providers_minimum_age(
    cli: Cli, apps: Apps, store_account: StoreAccount, engine: Engine
) -> None:
    instagram = apps.providers["instagram"]
    young = instagram_token(instagram, timedelta(hours=2))
    store_account(
        "instagram", "young", access=young, refresh=young,
        access_in=timedelta(days=59, hours=22), refresh_in=timedelta(days=59, hours=22),
        issued=timedelta(hours=2),
    )  # fmt: skip

    asked = cli(
        "accounts", "token", "--app", "instagram", "--open-id", "young", "--min-valid", "60d",
        env=apps.env,
    )  # fmt: skip
    enough = cli("accounts", "token", "--app", "instagram", "--open-id", "young", env=apps.env)

    assert asked.exit_code == 2
    account_id = row(engine, "instagram", "young")["id"]
    assert asked.stderr.startswith(f"error: account {account_id} (young): its token was issued at ")
    assert (
        "Instagram refreshes a token only once it is 1d old, so it cannot be made valid for "
        "60d yet; ask with a smaller min_valid"
    ) in asked.stderr
    assert young not in asked.stdout + asked.stderr
    assert instagram.received == []  # never presented
    assert enough.exit_code == 0, enough.stderr
    assert enough.stdout == young + "\n"
