"""`accounts import --app NAME`: each line in the shape of the app's provider's token answer
(the envelope unwrapped), stored in that app; Instagram's one token in both slots; a
refresh expiry the answer never states is `max_refresh` after issue; a token without
issued_at of a provider with a minimum age was issued its lifetime before it expires.
Refused lines name the line and the field, never a value, and write nothing."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from conftest import Cli, CliResult
from helpers import snapshot
from tokenrefresh.base.apps import CONFIG
from tokenrefresh.base.clock import utcnow
from tokenrefresh.base.providers import load_profiles
from tokenrefresh.errors import ImportFileError
from tokenrefresh.services.import_lines import line_shape
from tokenrefresh.services.importer import KNOWN_FIELDS, parse_accounts
from tokenrefresh.storage.models import Account

ERROR_HEAD = "error: nothing was imported; fix these lines and run the import again:\n"
CONFIG_TEXT = """
[apps.x-main]
provider = "x"
client_id = "x-client-id"
client_secret_env = "X_MAIN_SECRET"

[apps.yt]
provider = "google"
client_id = "google-client-id"
client_secret_env = "GOOGLE_SECRET"

[apps.insta]
provider = "instagram"

[apps.shop]
provider = "tiktok-shop"
client_id = "shop-app-key"
client_secret_env = "SHOP_SECRET"
"""
APPS = "apps: insta, shop, x-main, yt"
PROVIDERS = ("tiktok", "x", "google", "instagram", "tiktok-shop")
DOCS = Path(__file__).resolve().parent.parent / "docs" / "providers.md"


@pytest.fixture
def config(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG_TEXT, encoding="utf-8")
    return {CONFIG: str(path)}


def jsonl(*lines: dict[str, Any] | str) -> str:
    return "".join((item if isinstance(item, str) else json.dumps(item)) + "\n" for item in lines)


def imported(cli: Cli, config: dict[str, str], app: str, *lines: dict[str, Any]) -> CliResult:
    result = cli("accounts", "import", "--app", app, "--json", input=jsonl(*lines), env=config)
    assert result.exit_code == 0, result.stderr
    return result


def row(engine: Engine, app: str, user_id: str) -> dict[str, Any]:
    with engine.connect() as connection:
        found = connection.execute(
            select(Account.__table__).where(Account.app == app, Account.open_id == user_id)
        ).one()
    return dict(found._mapping)


def tokens(row: dict[str, Any], fernet_key: str) -> tuple[str, str]:
    fernet = Fernet(fernet_key)
    return (
        fernet.decrypt(row["access_token_ciphertext"]).decode(),
        fernet.decrypt(row["refresh_token_ciphertext"]).decode(),
    )


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def an_hour_ago() -> datetime:
    return (utcnow() - timedelta(hours=1)).replace(microsecond=0)


def x_line(user_id: str = "1500000001", **fields: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "user_id": user_id,
        "access_token": f"x-access-{user_id}-Kq93Lm",
        "refresh_token": f"x-refresh-{user_id}-Wp27Hd",
        "expires_in": 7200,
        "scope": "tweet.read users.read offline.access",
        "token_type": "bearer",
    }
    line.update(fields)
    return {name: value for name, value in line.items() if value is not None}


def instagram_line(user_id: Any = 17841405793187218, **fields: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "user_id": user_id,
        "access_token": f"IGQVJ-long-lived-{user_id}-Tz81Vb",
        "token_type": "bearer",
        "expires_in": 5_184_000,  # 60 days
        "permissions": ["instagram_business_basic"],
    }
    line.update(fields)
    return {name: value for name, value in line.items() if value is not None}


def shop_line(open_id: str = "shop-7001", **fields: Any) -> dict[str, Any]:
    now = int(utcnow().timestamp())
    line: dict[str, Any] = {
        "open_id": open_id,
        "access_token": f"ROW_shop-access-{open_id}-Pq42",
        "refresh_token": f"ROW_shop-refresh-{open_id}-Mn88",
        "access_token_expire_in": now + 6 * 86_400,
        "refresh_token_expire_in": now + 60 * 86_400,
        "granted_scopes": ["seller.authorization.info", "seller.order.info"],
        "seller_name": "Shop Berlin",
        "seller_base_region": "DE",
        "user_type": 0,
    }
    line.update(fields)
    return {name: value for name, value in line.items() if value is not None}


# ----------------------------------------------------------------------------- each provider


def test_an_x_line_without_a_refresh_expiry_lives_max_refresh_from_issue(
    cli: Cli, config: dict[str, str], engine: Engine, fernet_key: str
) -> None:
    issued = an_hour_ago()
    line = x_line(issued_at=iso(issued), label="Main X")
    result = imported(cli, config, "x-main", line)
    assert result.json() == {"created": 1, "updated": 0, "unchanged": 0}

    stored = row(engine, "x-main", "1500000001")
    assert tokens(stored, fernet_key) == (line["access_token"], line["refresh_token"])
    assert stored["access_expires_at"] == issued + timedelta(seconds=7200)
    x = load_profiles()["x"]
    assert stored["refresh_expires_at"] == issued + x.lifetimes.max_refresh
    assert stored["tokens_issued_at"] == issued
    assert (stored["label"], stored["scope"]) == ("Main X", line["scope"])
    assert stored["status"] == "active"
    for token in (line["access_token"], line["refresh_token"]):
        assert token not in result.stdout + result.stderr


def test_a_google_line_takes_its_refresh_expires_at_and_ignores_the_answers_other_fields(
    cli: Cli, config: dict[str, str], engine: Engine, fernet_key: str
) -> None:
    issued = an_hour_ago()
    given_expiry = datetime(2030, 6, 1, tzinfo=UTC)
    stated = x_line(
        "google-sub-1",
        expires_in=3599,
        scope="https://www.googleapis.com/auth/youtube.readonly",
        id_token="eyJhbGciOi.not-read.at-all",
        refresh_token_expires_in=604_799,  # in the profile's fields: accepted, ignored
        issued_at=iso(issued),
        refresh_expires_at=iso(given_expiry),
    )
    unstated = x_line("google-sub-2", expires_in=3599, issued_at=iso(issued))
    imported(cli, config, "yt", stated, unstated)

    first, second = row(engine, "yt", "google-sub-1"), row(engine, "yt", "google-sub-2")
    assert tokens(first, fernet_key) == (stated["access_token"], stated["refresh_token"])
    assert first["access_expires_at"] == issued + timedelta(seconds=3599)
    assert first["refresh_expires_at"] == given_expiry
    assert second["refresh_expires_at"] == issued + load_profiles()["google"].lifetimes.max_refresh


def test_an_instagram_line_stores_its_one_token_in_both_slots(
    cli: Cli, config: dict[str, str], engine: Engine, fernet_key: str
) -> None:
    line = instagram_line(label="Brand IG")
    before = utcnow()
    imported(cli, config, "insta", line)
    after = utcnow()

    stored = row(engine, "insta", "17841405793187218")  # a number, kept as its decimal text
    assert tokens(stored, fernet_key) == (line["access_token"], line["access_token"])
    assert stored["refresh_expires_at"] == stored["access_expires_at"]
    assert before + timedelta(days=60) <= stored["access_expires_at"] <= after + timedelta(days=60)
    # No issued_at: issued its 60-day lifetime before it expires (here: at the import).
    assert stored["tokens_issued_at"] == stored["access_expires_at"] - timedelta(days=60)
    assert stored["scope"] == ""
    assert stored["label"] == "Brand IG"


def test_an_instagram_token_without_issued_at_was_issued_60_days_before_it_expires(
    cli: Cli, config: dict[str, str], engine: Engine
) -> None:
    expiry = (utcnow() + timedelta(days=10)).replace(microsecond=0)
    issued = an_hour_ago()
    lines = [
        instagram_line("by-expiry", expires_in=None, access_expires_at=iso(expiry)),
        instagram_line("stated", issued_at=iso(issued)),
        instagram_line("longer", expires_in=61 * 86_400),  # never issued in the future
    ]
    before = utcnow()
    imported(cli, config, "insta", *lines)
    after = utcnow()

    by_expiry = row(engine, "insta", "by-expiry")
    assert by_expiry["access_expires_at"] == by_expiry["refresh_expires_at"] == expiry
    assert by_expiry["tokens_issued_at"] == expiry - timedelta(days=60)
    stated = row(engine, "insta", "stated")
    assert stated["tokens_issued_at"] == issued
    assert stated["access_expires_at"] == issued + timedelta(days=60)
    longer = row(engine, "insta", "longer")
    assert before <= longer["tokens_issued_at"] <= after
    assert longer["access_expires_at"] == longer["tokens_issued_at"] + timedelta(days=61)


def test_a_tiktok_shop_line_has_unix_timestamps_cut_to_the_profiles_ceilings(
    cli: Cli, config: dict[str, str], engine: Engine, fernet_key: str
) -> None:
    issued = an_hour_ago()
    stamp = int(issued.timestamp())
    exact = shop_line(
        issued_at=iso(issued),
        access_token_expire_in=stamp + 6 * 86_400,
        refresh_token_expire_in=stamp + 60 * 86_400,
    )
    long = shop_line("shop-7002", issued_at=iso(issued), access_token_expire_in=stamp + 30 * 86_400)
    imported(cli, config, "shop", exact, long)

    stored = row(engine, "shop", "shop-7001")
    assert tokens(stored, fernet_key) == (exact["access_token"], exact["refresh_token"])
    assert stored["access_expires_at"] == datetime.fromtimestamp(stamp + 6 * 86_400, UTC)
    assert stored["refresh_expires_at"] == datetime.fromtimestamp(stamp + 60 * 86_400, UTC)
    assert stored["scope"] == "seller.authorization.info,seller.order.info"
    assert stored["tokens_issued_at"] == issued
    # Longer than the profile's max_access (8 days): cut to it, as a refresh cuts it.
    assert row(engine, "shop", "shop-7002")["access_expires_at"] == issued + timedelta(days=8)


def test_the_same_user_id_in_two_apps_makes_two_accounts(
    cli: Cli, tmp_path: Path, engine: Engine, fernet_key: str
) -> None:
    path = tmp_path / "two.toml"
    path.write_text(
        '[apps.x-eu]\nprovider = "x"\nclient_id = "a"\nclient_secret_env = "A"\n'
        '[apps.x-us]\nprovider = "x"\nclient_id = "b"\nclient_secret_env = "B"\n',
        encoding="utf-8",
    )
    config = {CONFIG: str(path)}
    eu = x_line("42", access_token="x-eu-access-Aa11", refresh_token="x-eu-refresh-Bb22")
    us = x_line("42", access_token="x-us-access-Cc33", refresh_token="x-us-refresh-Dd44")
    imported(cli, config, "x-eu", eu)
    imported(cli, config, "x-us", us)
    again = imported(cli, config, "x-us", us)
    assert again.json() == {"created": 0, "updated": 0, "unchanged": 1}

    for app, line in (("x-eu", eu), ("x-us", us)):
        assert tokens(row(engine, app, "42"), fernet_key) == (
            line["access_token"],
            line["refresh_token"],
        )
    listed = cli("accounts", "list", "--json", env=config)
    assert [(a["app"], a["provider"], a["user_id"]) for a in listed.json()["accounts"]] == [
        ("x-eu", "x", "42"),
        ("x-us", "x", "42"),
    ]


def test_the_only_app_of_a_file_needs_no_app_option(
    cli: Cli, tmp_path: Path, engine: Engine
) -> None:
    path = tmp_path / "one.toml"
    path.write_text('[apps.insta]\nprovider = "instagram"\n', encoding="utf-8")
    result = cli("accounts", "import", input=jsonl(instagram_line("1")), env={CONFIG: str(path)})
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Imported 1 account(s): 1 new, 0 updated.\n"
    assert row(engine, "insta", "1")["app"] == "insta"


def test_without_a_file_app_tiktok_is_the_one_app(cli: Cli, engine: Engine) -> None:
    line = {
        "open_id": "creator-1",
        "access_token": "act.creator-1-Zz",
        "refresh_token": "rft.creator-1-Yy",
        "expires_in": 7200,
        "refresh_expires_in": 86_400,
    }
    result = cli("accounts", "import", "--app", "tiktok", input=jsonl(line))
    assert result.exit_code == 0, result.stderr
    assert row(engine, "tiktok", "creator-1")["app"] == "tiktok"
    wrong = cli("accounts", "import", "--app", "x", input=jsonl(line))
    assert (wrong.exit_code, wrong.stderr) == (
        2,
        "error: no app 'x' is configured (apps: tiktok)\n",
    )


def test_a_tiktok_lifetime_is_stored_as_given_as_it_always_was(cli: Cli, engine: Engine) -> None:
    issued = an_hour_ago()
    line = {
        "open_id": "creator-2",
        "access_token": "act.creator-2-Xx",
        "refresh_token": "rft.creator-2-Ww",
        "expires_in": 2 * 86_400,
        "refresh_expires_in": 400 * 86_400,
        "issued_at": iso(issued),
    }
    result = cli("accounts", "import", input=jsonl(line))
    assert result.exit_code == 0, result.stderr
    stored = row(engine, "tiktok", "creator-2")
    # TikTok's import is unchanged from 0.2.0: no cut (a refresh cuts what TikTok answers).
    assert stored["access_expires_at"] == issued + timedelta(days=2)
    assert stored["refresh_expires_at"] == issued + timedelta(days=400)


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("app", "args"),
    [
        pytest.param("", (), id="several-apps-no-app"),
        pytest.param("nope", ("--app", "nope"), id="unknown-app"),
    ],
)
def test_an_app_that_is_not_named_or_not_configured_is_exit_2(
    cli: Cli, config: dict[str, str], engine: Engine, app: str, args: tuple[str, ...]
) -> None:
    before = snapshot(engine)
    result = cli("accounts", "import", *args, input=jsonl(x_line()), env=config)
    assert result.exit_code == 2
    expected = (
        f"error: no app {app!r} is configured ({APPS})\n"
        if app
        else f"error: several apps are configured: name one with --app ({APPS})\n"
    )
    assert result.stderr == expected
    assert result.stdout == ""
    assert snapshot(engine) == before


BAD_LINES: list[tuple[str, str, dict[str, Any] | str, str]] = [
    ("x-unknown-field", "x-main", x_line(open_id="1"), "unknown field 'open_id'"),
    ("x-missing-user-id", "x-main", x_line(user_id=None), "field 'user_id' is missing"),
    (
        "x-refresh-expiry-in-seconds",
        "x-main",
        x_line(refresh_expires_in=86_400),
        "unknown field 'refresh_expires_in'",
    ),
    (
        "instagram-refresh-token",
        "insta",
        instagram_line(refresh_token="IGQV-leak-refresh-77"),
        "unknown field 'refresh_token'",
    ),
    (
        "instagram-refresh-expiry",
        "insta",
        instagram_line(refresh_expires_at="2030-01-01T00:00:00Z"),
        "unknown field 'refresh_expires_at'",
    ),
    ("instagram-scope", "insta", instagram_line(scope="x"), "unknown field 'scope'"),
    (
        "instagram-negative-user-id",
        "insta",
        instagram_line(-5),
        "field 'user_id' must be a non-empty string or a whole number",
    ),
    ("shop-missing-open-id", "shop", shop_line(open_id=None), "field 'open_id' is missing"),
    (
        "shop-seconds-instead-of-a-timestamp",
        "shop",
        shop_line(access_token_expire_in=604_800),
        "field 'access_token_expire_in' is not between the years 2000 and 2999",
    ),
    (
        "shop-timestamp-as-text",
        "shop",
        shop_line(refresh_token_expire_in="1900000000"),
        "field 'refresh_token_expire_in' must be a Unix timestamp in whole seconds",
    ),
    (
        "shop-no-access-expiry",
        "shop",
        shop_line(access_token_expire_in=None),
        "field 'access_token_expire_in' (or 'access_expires_at') is missing",
    ),
    (
        "shop-scopes-not-strings",
        "shop",
        shop_line(granted_scopes=["ok", 7]),
        "field 'granted_scopes' must be a string or a list of non-empty strings",
    ),
    ("shop-envelope", "shop", {"code": 0, "data": shop_line()}, "unknown field 'code', 'data'"),
]


@pytest.mark.parametrize(
    ("app", "bad", "expected"),
    [pytest.param(app, bad, expected, id=name) for name, app, bad, expected in BAD_LINES],
)
def test_a_bad_line_names_line_and_field_and_imports_nothing(
    cli: Cli,
    config: dict[str, str],
    engine: Engine,
    app: str,
    bad: dict[str, Any],
    expected: str,
) -> None:
    good = {"x-main": x_line, "insta": instagram_line, "shop": shop_line}[app]("good-1")
    before = snapshot(engine)
    result = cli("accounts", "import", "--app", app, input=jsonl(good, bad), env=config)
    assert result.exit_code == 2
    assert result.stderr == f"{ERROR_HEAD}  line 2: {expected}\n"
    assert snapshot(engine) == before
    values = [str(v) for line in (good, bad) for v in _values(line) if len(str(v)) >= 8]
    for value in values:
        assert value not in result.stdout + result.stderr


def test_the_same_user_id_twice_in_a_file_is_refused(
    cli: Cli, config: dict[str, str], engine: Engine
) -> None:
    before = snapshot(engine)
    result = cli(
        "accounts",
        "import",
        "--app",
        "insta",
        input=jsonl(instagram_line(77), instagram_line("77", access_token="IGQV-second-Hh55")),
        env=config,
    )
    assert result.exit_code == 2
    assert result.stderr == f"{ERROR_HEAD}  line 2: user_id is the same as on line 1\n"
    assert snapshot(engine) == before


def _values(data: Any) -> list[Any]:
    if isinstance(data, dict):
        return [value for item in data.values() for value in _values(item)]
    if isinstance(data, list):
        return [value for item in data for value in _values(item)]
    return [data]


# ----------------------------------------------------------------------------- the parser


def test_the_tiktok_line_is_todays_line() -> None:
    assert line_shape(load_profiles()["tiktok"]).known == KNOWN_FIELDS


def test_every_example_line_in_the_providers_page_imports() -> None:
    text = DOCS.read_text(encoding="utf-8")
    section = text[text.index("## Importing accounts") :]
    section = section[: section.find("\n## ", 1)]
    examples = re.findall(r"\*\*`([a-z-]+)`\*\*.*?```json\n(.*?)\n```", section, re.DOTALL)
    assert sorted(name for name, _ in examples) == sorted(PROVIDERS)
    profiles = load_profiles()
    now = utcnow()
    for name, line in examples:
        [account] = parse_accounts([line], now, profiles[name])
        assert account.open_id, name


def test_a_number_of_too_many_digits_is_a_line_error() -> None:
    line = json.dumps(x_line()).replace('"expires_in": 7200', '"expires_in": ' + "7" * 5000)
    with pytest.raises(ImportFileError) as raised:
        parse_accounts([line], utcnow(), PROFILES["x"])
    assert raised.value.message.endswith("  line 1: not valid JSON (a number with too many digits)")


PROFILES = load_profiles()
MARK = "Vv9-"  # every string value generated below starts with it; no message may hold one
names = st.sampled_from(sorted({n for p in PROVIDERS for n in line_shape(PROFILES[p]).known}))
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12).map(lambda text: MARK + text),
)
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
objects = st.dictionaries(names | st.text(max_size=8), values, max_size=10)


VALID = {
    "tiktok": {
        "open_id": "creator-77",
        "access_token": "act.creator-77-Ab12",
        "refresh_token": "rft.creator-77-Cd34",
        "expires_in": 7200,
        "refresh_expires_in": 86_400,
    },
    "x": x_line(),
    "google": x_line("google-sub-9", expires_in=3599),
    "instagram": instagram_line(),
    "tiktok-shop": shop_line(),
}


@settings(max_examples=50)
@given(
    provider=st.sampled_from(PROVIDERS),
    dropped=st.sets(names, max_size=3),
    changed=objects,
)
def test_any_json_object_is_an_account_or_a_line_error_that_echoes_no_value(
    provider: str, dropped: set[str], changed: dict[str, Any]
) -> None:
    """A valid line with fields left out and others added or replaced by any JSON."""
    valid = VALID[provider]
    line = {name: value for name, value in valid.items() if name not in dropped} | changed
    message = ""
    try:
        parse_accounts([json.dumps(line)], utcnow(), PROFILES[provider])
    except ImportFileError as error:
        message = error.message
    if message:
        assert message.splitlines()[1].startswith("  line 1: ")
        assert MARK not in message
        for value in _values(valid):
            assert len(str(value)) < 8 or str(value) not in message
