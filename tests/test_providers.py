"""Provider profiles as data: the shipped ones load and say what their providers' documents
say; a wrong profile is refused with the file and the key named, whatever it holds; and
`providers list | show` print what a profile says (show's TOML loads back as the same).

The behaviour of each profile against a stand-in of its provider comes with the generic
client; here, the profile itself."""

from __future__ import annotations

import json
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from tokenrefresh.adapters.tiktok import answer as tiktok_answer
from tokenrefresh.adapters.tiktok import client as tiktok_client
from tokenrefresh.base import defaults
from tokenrefresh.base.providers import (
    Profile,
    ProfileSource,
    find_profile,
    load_profiles,
    shipped_sources,
)
from tokenrefresh.base.providers.load import SCHEMA, TOP
from tokenrefresh.base.settings import DEFAULT_API_BASE_URL, DEFAULT_AUTHORIZE_URL
from tokenrefresh.cli import app
from tokenrefresh.errors import ConfigError, UsageError
from tokenrefresh.services.importer import KNOWN_FIELDS

# Issue 21: `providers list` shows all fifteen.
SHIPPED = {
    "tiktok", "tiktok-business", "tiktok-shop", "x", "instagram", "threads", "google",
    "linkedin", "pinterest", "reddit", "zoom", "spotify", "xero", "dropbox", "oauth2",
}  # fmt: skip
KNOWN = ", ".join(sorted(SHIPPED))
WHERE = "/etc/tokenrefresh/config.toml: [providers.mine]"


def defined(table: dict[str, Any], name: str = "mine", where: str = WHERE) -> Profile:
    """`table` as a configuration file's [providers.NAME] table, loaded beside the shipped."""
    return load_profiles({name: ProfileSource(name, table, where)})[name]


def refused(table: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as raised:
        defined(table)
    message = raised.value.message
    assert message.startswith(f"{WHERE}: "), message
    return message.removeprefix(f"{WHERE}: ")


PLAIN = {"extends": "oauth2", "urls": {"token": "https://idp.example/oauth/token"}}


# ----------------------------------------------------------------------------- shipped


def test_the_fifteen_profiles_are_shipped_and_each_names_its_sources() -> None:
    profiles = load_profiles()
    assert set(profiles) == SHIPPED
    for name, profile in profiles.items():
        text = Path(profile.source).read_text(encoding="utf-8")
        assert "Sources:" in text or "Source:" in text, name
        assert profile.docs, name
        assert all(url.startswith("https://") for url in profile.docs), name
        assert profile.template == (name == "oauth2"), name
        assert profile.extends == (() if name == "oauth2" else ("oauth2",)), name
        if not profile.template:
            urls = [profile.urls.token, profile.urls.refresh, profile.urls.revoke]
            assert all(url is None or url.startswith("https://") for url in urls), name


def test_the_tiktok_profile_is_todays_client_exactly() -> None:
    tiktok = load_profiles()["tiktok"]
    assert tiktok.urls.token == DEFAULT_API_BASE_URL + tiktok_client.TOKEN_PATH
    assert tiktok.urls.refresh_url == tiktok.urls.token
    assert tiktok.urls.revoke == DEFAULT_API_BASE_URL + tiktok_client.REVOKE_PATH
    assert tiktok.urls.authorize == DEFAULT_AUTHORIZE_URL
    assert (tiktok.client.auth, tiktok.client.id_name, tiktok.client.secret_name) == (
        "params",
        "client_key",
        "client_secret",
    )
    refresh = tiktok.refresh
    assert (refresh.method, refresh.body, refresh.presents) == ("POST", "form", "refresh_token")
    assert (refresh.token_name, refresh.grant_type, dict(refresh.params)) == (
        "refresh_token",
        "refresh_token",
        {},
    )
    assert refresh.window == defaults.WINDOW
    assert refresh.min_age == timedelta(0)
    assert tiktok.rotation.mode == "rotating"
    assert tiktok.lifetimes.max_access == tiktok_answer.MAX_ACCESS_LIFETIME
    assert tiktok.lifetimes.max_refresh == tiktok_answer.MAX_REFRESH_LIFETIME
    assert tiktok.errors.reconnect == tiktok_answer.USER_REJECTIONS
    assert tiktok.errors.app_rejected == tiktok_answer.APP_REJECTIONS
    assert tiktok.errors.transient == tiktok_answer.RETRYABLE_CODES
    answer = tiktok.answer
    assert answer.user_id == "open_id"
    assert (answer.access_expiry, answer.refresh_expiry) == ("expires_in", "refresh_expires_in")
    assert answer.access_expiry_unit == answer.refresh_expiry_unit == "seconds"
    carried = {answer.access_token, answer.refresh_token, answer.user_id, answer.scope}
    assert {*carried, answer.access_expiry, answer.refresh_expiry, *answer.fields} <= KNOWN_FIELDS
    assert (tiktok.consent.scopes, tiktok.consent.scope_separator) == (("user.info.basic",), ",")
    assert tiktok.consent.client_id_name == "client_key"
    assert (tiktok.revoke.presents, tiktok.revoke.token_name) == ("access_token", "token")


def test_x_sends_basic_auth_rotates_and_needs_pkce() -> None:
    x = load_profiles()["x"]
    assert x.client.auth == "basic"
    assert x.rotation.mode == "rotating"
    assert x.consent.pkce == "required"
    assert "offline.access" in x.consent.scopes  # no refresh token without it
    assert "invalid_request" not in x.errors.reconnect  # unsure: never marks a user on a guess


def test_google_does_not_rotate_and_asks_for_offline_access() -> None:
    google = load_profiles()["google"]
    assert google.rotation.mode == "none"
    assert google.answer.refresh_token == "refresh_token"  # stored when one comes
    assert google.consent.params["access_type"] == "offline"
    assert google.errors.reconnect == {"invalid_grant"}


def test_instagram_refreshes_a_60_day_token_a_week_ahead_never_a_fresh_one() -> None:
    instagram = load_profiles()["instagram"]
    refresh, lifetimes = instagram.refresh, instagram.lifetimes
    assert (refresh.method, refresh.body, refresh.presents) == ("GET", "query", "access_token")
    assert (refresh.token_name, refresh.grant_type) == ("access_token", "ig_refresh_token")
    assert instagram.client.auth == "none"
    assert instagram.answer.refresh_token == ""
    assert refresh.min_age == timedelta(hours=24)
    assert lifetimes.access == timedelta(days=60)
    assert refresh.window >= timedelta(days=7)  # well before its last days
    # A fresh token (60 days left) is not due, nor one just past its minimum age.
    assert lifetimes.access - refresh.min_age > refresh.window
    assert instagram.errors.reconnect == {"190"}
    assert {"1", "2", "4", "17", "341"} <= instagram.errors.transient


def test_tiktok_shop_reads_an_envelope_with_absolute_expiries() -> None:
    shop = load_profiles()["tiktok-shop"]
    assert (shop.refresh.method, shop.refresh.body) == ("GET", "query")
    assert (shop.client.id_name, shop.client.secret_name) == ("app_key", "app_secret")
    assert shop.answer.envelope == "data"
    assert shop.answer.access_expiry_unit == shop.answer.refresh_expiry_unit == "timestamp"
    assert shop.errors.code == ("code",)
    assert shop.errors.success == ("0",)
    assert shop.errors.reconnect == frozenset()  # unsure codes never mark a user
    assert "seller_name" in shop.answer.fields
    assert (shop.consent.code_name, shop.consent.code_grant_type) == (
        "auth_code",
        "authorized_code",
    )


# ----------------------------------------------------------------------------- defined


def test_a_plain_rfc_6749_provider_needs_only_its_token_url() -> None:
    profile = defined({**PLAIN, "client": {"auth": "basic"}})
    assert profile.urls.refresh_url == "https://idp.example/oauth/token"
    assert profile.extends == ("oauth2",)
    assert profile.template is False
    assert profile.title == "mine"
    assert profile.source == WHERE


def test_a_profile_extends_a_shipped_one_table_by_table() -> None:
    profile = defined(
        {"extends": "tiktok", "urls": {"revoke": ""}, "refresh": {"window": "2h"}},
    )
    tiktok = load_profiles()["tiktok"]
    assert profile.extends == ("tiktok", "oauth2")
    assert profile.urls.token == tiktok.urls.token  # inherited within the table
    assert profile.urls.revoke is None
    assert profile.refresh.window == timedelta(hours=2)
    assert profile.client == tiktok.client
    assert profile.errors == tiktok.errors


def test_a_params_table_is_replaced_whole_not_merged() -> None:
    profile = defined({"extends": "google", "consent": {"params": {"prompt": "none"}}})
    assert dict(profile.consent.params) == {"prompt": "none"}


REFUSED = [
    ({**PLAIN, "colour": "red"}, "unknown key 'colour'"),
    ({**PLAIN, "refresh": {"methd": "GET"}}, "[refresh] unknown key 'methd'"),
    ({**PLAIN, "urls": "https://idp.example"}, "[urls] must be a table"),
    ({**PLAIN, "refresh": {"window": 90}}, "[refresh] window: must be a duration"),
    ({**PLAIN, "refresh": {"window": "90"}}, "[refresh] window: '90' has no unit"),
    ({**PLAIN, "refresh": {"method": "PUT"}}, '[refresh] method: must be one of "POST", "GET"'),
    ({**PLAIN, "client": {"id_name": "client id"}}, "[client] id_name: must be a parameter name"),
    ({**PLAIN, "errors": {"reconnect": ["a b"]}}, "[errors] reconnect: 'a b' is not an error code"),
    ({**PLAIN, "errors": {"reconnect": [True]}}, "[errors] reconnect: True is not an error code"),
    ({**PLAIN, "consent": {"params": {"a": 1}}}, "[consent] params: a: must be printable text"),
    ({**PLAIN, "template": "yes"}, "template: must be true or false"),
    ({"extends": "oauth2"}, "[urls] token is missing"),
    ({"urls": {"token": "https://idp.example/t"}}, '[urls] refresh is missing (extend "oauth2"'),
    (
        {**PLAIN, "extends": "nope"},
        "extends: no profile 'nope' (known: dropbox, google, instagram, linkedin, mine,",
    ),
    ({**PLAIN, "extends": "Not A Name"}, "extends: must be the name of a profile"),
    ({**PLAIN, "refresh": {"method": "GET"}}, "[refresh] body: a GET sends 'form'"),
    ({**PLAIN, "refresh": {"body": "query"}}, "[refresh] body: a POST sends 'query'"),
    (
        {**PLAIN, "refresh": {"presents": "access_token"}, "answer": {"refresh_token": ""}},
        "[rotation] mode: a refresh that presents the access token has no refresh token",
    ),
    (
        {**PLAIN, "refresh": {"presents": "access_token"}, "rotation": {"mode": "none"}},
        "[answer] refresh_token: a refresh that presents the access token gets no",
    ),
    ({**PLAIN, "answer": {"refresh_token": ""}}, "[answer] refresh_token: a refresh that presents"),
    ({**PLAIN, "rotation": {"mode": "grace"}}, "[rotation] grace: a grace period goes with mode"),
    ({**PLAIN, "rotation": {"grace": "30m"}}, "[rotation] grace: a grace period goes with mode"),
    (
        {**PLAIN, "errors": {"transient": ["invalid_grant"]}},
        "[errors] 'invalid_grant' is in both reconnect and transient",
    ),
    ({**PLAIN, "errors": {"success": [0], "reconnect": [0]}}, "[errors] '0' is in both success"),
    ({**PLAIN, "refresh": {"window": "1d"}}, "[refresh] window must be longer than 0s and short"),
    ({**PLAIN, "refresh": {"window": "0s"}}, "[refresh] window must be longer than 0s"),
    ({**PLAIN, "refresh": {"min_age": "1h"}}, "[lifetimes] access is missing: a minimum age"),
    (
        {**PLAIN, "refresh": {"min_age": "1h"}, "lifetimes": {"access": "2h"}},
        "[refresh] min_age and window: a token must be old enough",
    ),
    ({**PLAIN, "lifetimes": {"access": "2d"}}, "[lifetimes] access must be longer than 0s and"),
    ({**PLAIN, "lifetimes": {"max_refresh": "0s"}}, "[lifetimes] max_access and max_refresh"),
    ({**PLAIN, "answer": {"scope": "open_id", "user_id": "open_id"}}, "[answer] 'open_id' names"),
    ({**PLAIN, "refresh": {"token_name": "client_secret"}}, "[refresh] token_name: 'client_sec"),
    (
        {**PLAIN, "errors": {"code": [], "description": []}},
        "[errors] code: no path to read an error code from",
    ),
    ({**PLAIN, "errors": {"code": []}}, "[errors] description: one path for each of code's"),
    ({**PLAIN, "errors": {"code_kind": "number"}}, '[errors] code_kind: "number", but a listed'),
    ({**PLAIN, "errors": {"code_kind": "word"}}, '[errors] code_kind: must be one of "text"'),
    ({**PLAIN, "errors": {"code": ["error..code"]}}, "[errors] code: 'error..code' is not a dot"),
    ({**PLAIN, "consent": {"scope_separator": ";"}}, "[consent] scope_separator: must be one of"),
    ({**PLAIN, "urls": {"token": "http://idp.example/t"}}, "[urls] token: must use https"),
    ({**PLAIN, "urls": {"token": "ftp://idp.example/t"}}, "[urls] token: is not an http(s) URL"),
    ({**PLAIN, "urls": {"token": "https://idp.example:x/t"}}, "[urls] token: is not a URL"),
]


@pytest.mark.parametrize(("table", "expected"), REFUSED, ids=[e for _, e in REFUSED])
def test_a_wrong_profile_is_refused_naming_its_file_and_key(
    table: dict[str, Any], expected: str
) -> None:
    assert refused(table).startswith(expected)


@pytest.mark.parametrize(
    "url",
    [
        "https://client:hunter2-secret@idp.example/token",
        "https://idp.example/token?client_secret=hunter2-secret",
        "https://idp.example/token#hunter2-secret",
    ],
)
def test_a_url_that_carries_a_secret_is_refused_without_repeating_it(url: str) -> None:
    message = refused({**PLAIN, "urls": {"token": url}})
    assert message == "[urls] token: must not carry credentials, a query or a fragment (use params)"
    assert "hunter2" not in message


def test_http_is_accepted_for_a_loopback_host_only() -> None:
    assert defined({**PLAIN, "urls": {"token": "http://127.0.0.1:8080/t"}}).urls.token
    assert defined({**PLAIN, "urls": {"token": "http://localhost/t"}}).urls.token


def test_an_extends_cycle_is_refused_naming_the_chain() -> None:
    sources = {
        "first": ProfileSource(
            "first", {**PLAIN, "extends": "second"}, "f.toml: [providers.first]"
        ),
        "second": ProfileSource(
            "second", {**PLAIN, "extends": "first"}, "f.toml: [providers.second]"
        ),
    }
    with pytest.raises(ConfigError) as raised:
        load_profiles(sources)
    # Named where the cycle closes: `second` extends `first`, which extends `second`.
    assert raised.value.message == "f.toml: [providers.second]: extends: first -> second -> first"


def test_a_defined_profile_cannot_take_a_shipped_name() -> None:
    with pytest.raises(ConfigError) as raised:
        defined(PLAIN, name="tiktok")
    assert raised.value.message == (
        f"{WHERE}: 'tiktok' is a shipped profile: give yours another name and extends = \"tiktok\""
    )


def test_a_file_that_is_not_toml_or_too_large_is_refused_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"^x\.toml: not valid TOML \("):
        ProfileSource.from_toml("x", b"[urls\n", "x.toml")
    with pytest.raises(ConfigError, match=r"^x\.toml: not UTF-8 text$"):
        ProfileSource.from_toml("x", b"title = '\xff'", "x.toml")
    with pytest.raises(ConfigError, match=r"^x\.toml: larger than 64 KiB$"):
        ProfileSource.from_toml("x", b"#" * (64 * 1024 + 1), "x.toml")


def test_find_profile_names_the_known_ones() -> None:
    with pytest.raises(UsageError) as raised:
        find_profile(load_profiles(), "tik-tok")
    assert raised.value.message == (f"no provider profile 'tik-tok' (known: {KNOWN})")


KEYS = [*TOP, *SCHEMA, *(key for table in SCHEMA.values() for key in table)]
SCALARS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "90m", "0s", "61d", "https://idp.example/t", "GET", "query", "none"]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.floats(allow_nan=True),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=20,
)


@given(
    st.dictionaries(
        st.sampled_from(KEYS) | st.text(max_size=8),
        VALUES,
        max_size=6,
    ),
    st.sampled_from(["oauth2", "tiktok", "instagram", None]),
)
def test_whatever_a_table_holds_it_is_a_profile_or_a_config_error_naming_the_file(
    table: dict[str, Any], parent: str | None
) -> None:
    if parent is not None:
        table = {**table, "extends": parent}
    try:
        profile = defined(table)
    except ConfigError as error:
        message = error.message
    else:
        assert profile.urls.token is not None or profile.template
        assert profile.refresh.window < profile.lifetimes.max_access
        return
    assert message.startswith(f"{WHERE}: ")


# ----------------------------------------------------------------------------- the CLI


def test_providers_list_json_is_a_list_of_objects_with_names() -> None:
    result = CliRunner().invoke(app, ["providers", "list", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert [entry["name"] for entry in listed] == sorted(SHIPPED)
    tiktok = next(entry for entry in listed if entry["name"] == "tiktok")
    assert tiktok == {
        "name": "tiktok",
        "title": "TikTok (Login Kit)",
        "template": False,
        "extends": ["oauth2"],
        "source": str(shipped_sources()["tiktok"].where),
        "refresh_url": "https://open.tiktokapis.com/v2/oauth/token/",
        "presents": "refresh_token",
        "rotation": "rotating",
        "window": "1h30m",
    }


def test_providers_list_shows_a_row_per_profile() -> None:
    result = CliRunner().invoke(app, ["providers", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "15 provider profile(s):"
    rows = {line.split()[0]: line for line in lines[2:]}
    assert set(rows) == SHIPPED
    assert "GET query, access token" in rows["instagram"]
    assert "template" in rows["oauth2"]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_providers_show_prints_toml_that_loads_back_as_the_same_profile(name: str) -> None:
    result = CliRunner().invoke(app, ["providers", "show", name])
    assert result.exit_code == 0, result.output
    table = tomllib.loads(result.output)
    copy = defined(table, name="copy")
    original = load_profiles()[name]
    for section in ("urls", "client", "refresh", "answer", "rotation", "lifetimes", "errors"):
        assert getattr(copy, section) == getattr(original, section), section
    assert (copy.consent, copy.revoke) == (original.consent, original.revoke)
    assert (copy.title, copy.label, copy.docs, copy.template) == (
        original.title,
        original.label,
        original.docs,
        original.template,
    )


def test_providers_show_json_has_every_key_of_the_file_format() -> None:
    result = CliRunner().invoke(app, ["providers", "show", "tiktok-shop", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    for section, keys in SCHEMA.items():
        assert list(document[section]) == list(keys), section
    assert document["answer"]["access_expiry_unit"] == "timestamp"
    assert document["errors"]["success"] == ["0"]
    assert document["refresh"]["window"] == "1d"


def test_providers_show_an_unknown_name_exits_2_naming_the_known_ones() -> None:
    result = CliRunner().invoke(app, ["providers", "show", "tik-tok", "--json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout) == {
        "error": {
            "code": 2,
            "message": f"no provider profile 'tik-tok' (known: {KNOWN})",
        }
    }
