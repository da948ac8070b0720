"""Apps from a configuration file (TOKENREFRESH_CONFIG), and without one the single TikTok
app of the environment, as always. A wrong file is refused naming the file, the table and
the key; a secret is never in the file, and never in an error."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tokenrefresh.base.apps import CONFIG, load_configuration
from tokenrefresh.base.providers import shipped_sources
from tokenrefresh.cli import app
from tokenrefresh.errors import ConfigError, UsageError

SECRET = "x-main-secret-3b8d1f0c7a"
GOOD = """
[apps.x-main]
provider = "x"
client_id = "x-client-id"
client_secret_env = "X_MAIN_SECRET"
window = "45m"
concurrency = 4
rate_limit = 2.5

[apps.idp-app]
provider = "idp"
client_id = "idp-client"
client_secret_file = "{secret_file}"
base_url = "http://127.0.0.1:8080/prefix/"

[apps.insta]
provider = "instagram"

[providers.idp]
extends = "oauth2"
urls.token = "https://idp.example/oauth/token"
client.auth = "params"
"""


def write(tmp_path: Path, text: str) -> dict[str, str]:
    secret_file = tmp_path / "idp-secret"
    secret_file.write_text("idp-secret-value-99aa\n")
    secret_file.chmod(0o600)
    path = tmp_path / "config.toml"
    path.write_text(text.replace("{secret_file}", str(secret_file)))
    return {CONFIG: str(path), "X_MAIN_SECRET": SECRET}


def refused(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    environ = {**write(tmp_path, text), **(env or {})}
    with pytest.raises(ConfigError) as raised:
        load_configuration(environ)
    message = raised.value.message
    assert SECRET not in message
    return message.replace(str(tmp_path / "config.toml"), "FILE")


def test_without_a_file_the_environment_makes_one_tiktok_app_as_always() -> None:
    configuration = load_configuration(
        {
            "TIKTOK_CLIENT_KEY": "key-1",
            "TIKTOK_CLIENT_SECRET": "secret-1",
            "TIKTOK_API_BASE_URL": "http://127.0.0.1:9000",
        }
    )
    assert configuration.path is None
    assert list(configuration.apps) == ["tiktok"]
    tiktok = configuration.app(None)
    assert tiktok.profile.name == "tiktok"
    assert tiktok.base_url == "http://127.0.0.1:9000"
    assert tiktok.refresh_window == timedelta(minutes=90)
    credentials = tiktok.credentials({})
    assert credentials is not None
    assert (credentials.client_key, credentials.client_secret.reveal()) == ("key-1", "secret-1")


def test_without_a_file_a_missing_secret_is_named_when_the_app_is_used() -> None:
    tiktok = load_configuration({"TIKTOK_CLIENT_KEY": "key-1"}).app("tiktok")
    with pytest.raises(ConfigError) as raised:
        tiktok.credentials({})
    assert raised.value.message == (
        "the environment: TIKTOK_CLIENT_SECRET is not set: the TikTok app's credentials are "
        "needed to refresh"
    )
    with pytest.raises(ConfigError) as raised:
        load_configuration({}).app("tiktok").credentials({})
    assert raised.value.message == (
        "the environment: TIKTOK_CLIENT_KEY and TIKTOK_CLIENT_SECRET are not set: the TikTok "
        "app's credentials are needed to refresh"
    )


def test_a_file_lists_every_app_with_its_provider_secret_and_overrides(tmp_path: Path) -> None:
    env = write(tmp_path, GOOD)
    configuration = load_configuration(env)
    assert configuration.path == env[CONFIG]
    assert sorted(configuration.apps) == ["idp-app", "insta", "x-main"]
    x = configuration.app("x-main")
    assert (x.profile.name, x.client_id, x.window, x.concurrency, x.rate_limit) == (
        "x",
        "x-client-id",
        timedelta(minutes=45),
        4,
        2.5,
    )
    assert x.refresh_window == timedelta(minutes=45)
    credentials = x.credentials(env)
    assert credentials is not None
    assert credentials.client_secret.reveal() == SECRET
    idp = configuration.app("idp-app")
    assert idp.profile.extends == ("oauth2",)
    assert idp.profile.source == f"{env[CONFIG]}: [providers.idp]"
    assert idp.base_url == "http://127.0.0.1:8080/prefix"
    idp_credentials = idp.credentials({})
    assert idp_credentials is not None
    assert idp_credentials.client_secret.reveal() == "idp-secret-value-99aa"
    assert configuration.app("insta").credentials({}) is None  # Instagram needs none
    assert "idp" in configuration.profiles


def test_the_secret_is_read_when_the_app_is_used_and_its_absence_named(tmp_path: Path) -> None:
    env = write(tmp_path, GOOD)
    x = load_configuration(env).app("x-main")
    with pytest.raises(ConfigError) as raised:
        x.credentials({})
    assert raised.value.message == (
        f"{env[CONFIG]}: [apps.x-main]: the variable X_MAIN_SECRET ({env[CONFIG]}: "
        "[apps.x-main] client_secret_env) is not set: the X app's credentials are needed to "
        "refresh"
    )


def test_the_default_location_is_read_when_the_variable_is_unset(tmp_path: Path) -> None:
    folder = tmp_path / "xdg" / "tokenrefresh"
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text('[apps.insta]\nprovider = "instagram"\n')
    configuration = load_configuration({"XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    assert configuration.path == str(folder / "config.toml")
    assert list(configuration.apps) == ["insta"]


def test_several_apps_need_a_name_and_an_unknown_name_lists_them(tmp_path: Path) -> None:
    configuration = load_configuration(write(tmp_path, GOOD))
    with pytest.raises(UsageError) as raised:
        configuration.app(None)
    assert raised.value.message == (
        "several apps are configured: name one with --app (apps: idp-app, insta, x-main)"
    )
    with pytest.raises(UsageError, match=r"^no app 'x' is configured \(apps: idp-app, insta"):
        configuration.app("x")


APP = '[apps.a]\nprovider = "x"\nclient_id = "c"\nclient_secret_env = "X_MAIN_SECRET"\n'
WRONG = [
    ("[apps]\n", "FILE: no [apps.NAME] table: the configuration file lists every app"),
    (APP + "colour = 1\n", "FILE: [apps.a]: unknown key 'colour' (known: provider, client_id,"),
    (APP + 'client_secret = "x-main-secret-3b8d1f0c7a"\n', "FILE: [apps.a]: client_secret: a "),
    ('[apps.a]\nprovider = "nope"\n', "FILE: [apps.a]: provider: must name a provider profile"),
    ('[apps.a]\nprovider = "oauth2"\n', "FILE: [apps.a]: provider: 'oauth2' is a template"),
    ('[apps.a]\nprovider = "x"\nclient_id = "c"\n', "FILE: [apps.a]: the X app needs client_id"),
    (
        APP + 'client_secret_file = "/run/s"\n',
        "FILE: [apps.a]: the X app needs client_id, and one of",
    ),
    (
        '[apps.a]\nprovider = "x"\nclient_id = "c"\nclient_secret_file = "s.txt"\n',
        "FILE: [apps.a]: client_secret_file: must be an absolute path",
    ),
    (
        '[apps.a]\nprovider = "x"\nclient_id = "c"\nclient_secret_env = "X-Y"\n',
        "FILE: [apps.a]: client_secret_env: must be the name of a variable",
    ),
    (APP + 'window = "1d"\n', "FILE: [apps.a]: window: must be longer than 0s and shorter"),
    (APP + 'window = "90"\n', "FILE: [apps.a]: window: '90' has no unit"),
    (APP + "concurrency = 0\n", "FILE: [apps.a]: concurrency: must be a whole number from 1"),
    (APP + 'rate_limit = "fast"\n', "FILE: [apps.a]: rate_limit: must be calls per second"),
    (APP + 'base_url = "http://idp.example"\n', "FILE: [apps.a]: base_url: plain http:// is"),
    (APP + "[apps.B]\n", "FILE: [apps.B]: a name is a-z, 0-9 and -, starting with a letter"),
    ("apps = 1\n", "FILE: apps must hold [apps.NAME] tables"),
    (APP + "[tables]\n", "FILE: unknown key 'tables' (known: apps, providers)"),
    (APP + "[providers.tiktok]\n", "FILE: [providers.tiktok]: 'tiktok' is a shipped profile"),
    (
        APP + '[providers.idp]\nextends = "oauth2"\nurls.token = "ftp://idp"\n',
        "FILE: [providers.idp]: [urls] token: is not an http(s) URL",
    ),
    (APP + "[apps.b\n", "FILE: not valid TOML ("),
]


@pytest.mark.parametrize(("text", "expected"), WRONG, ids=[e for _, e in WRONG])
def test_a_wrong_file_is_refused_naming_the_file_table_and_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    assert refused(tmp_path, text).startswith(expected)


def test_the_variable_must_name_an_absolute_path_of_a_regular_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^TOKENREFRESH_CONFIG: 'config.toml' is a relative"):
        load_configuration({CONFIG: "config.toml"})
    with pytest.raises(ConfigError, match=r"^cannot read TOKENREFRESH_CONFIG \(.*\): No such"):
        load_configuration({CONFIG: str(tmp_path / "missing.toml")})
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=r"is a named pipe \(FIFO\), not a regular file"):
        load_configuration({CONFIG: str(fifo)})


# ----------------------------------------------------------------------------- the CLI


def test_providers_list_shows_the_files_providers_beside_the_shipped(tmp_path: Path) -> None:
    env = write(tmp_path, GOOD)
    result = CliRunner().invoke(app, ["providers", "list", "--json"], env=env)
    assert result.exit_code == 0, result.output
    listed = {entry["name"]: entry for entry in json.loads(result.output)}
    assert set(listed) == {*shipped_sources(), "idp"}  # the shipped: test_providers.py
    assert listed["idp"]["source"] == f"{env[CONFIG]}: [providers.idp]"
    assert listed["idp"]["extends"] == ["oauth2"]
    assert listed["idp"]["refresh_url"] == "https://idp.example/oauth/token"


def test_a_wrong_profile_in_the_file_exits_3_naming_the_file_and_key(tmp_path: Path) -> None:
    text = APP + '[providers.idp]\nextends = "oauth2"\nurls.token = "https://idp.example/t"\n'
    env = write(tmp_path, text + 'refresh.methd = "GET"\n')
    result = CliRunner().invoke(app, ["providers", "show", "idp", "--json"], env=env)
    assert result.exit_code == 3
    expected = f"{env[CONFIG]}: [providers.idp]: [refresh] unknown key 'methd' (known: method,"
    assert json.loads(result.stdout)["error"]["message"].startswith(expected)
    assert f"error: {expected}" in result.stderr


# ----------------------------------------------------------------------------- any file

APP_KEYS_AND_MORE = st.sampled_from(
    [
        *("provider", "client_id", "client_secret_env", "client_secret_file", "base_url"),
        *("window", "concurrency", "rate_limit", "client_secret", "extends", "urls", "refresh"),
    ]
)
TOML_SCALARS = st.one_of(
    st.sampled_from(["x", "tiktok", "instagram", "oauth2", "idp", "X_MAIN_SECRET", "/run/s"]),
    st.sampled_from(["90m", "1d", "0s", "https://idp.example/t", "http://127.0.0.1:1", ""]),
    st.text(max_size=10),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.floats(allow_nan=False),
)
TOML_TABLES = st.dictionaries(
    APP_KEYS_AND_MORE | st.text(min_size=1, max_size=6),
    TOML_SCALARS | st.dictionaries(st.sampled_from(["token", "method", "x"]), TOML_SCALARS),
    max_size=6,
)


VALID_APPS = st.sampled_from(
    [
        {"provider": "x", "client_id": "c", "client_secret_env": "X_MAIN_SECRET"},
        {"provider": "instagram"},
        {"provider": "idp", "client_id": "c", "client_secret_file": "/run/s"},
        {},
    ]
)
# A valid app with one or two keys changed, or any table at all.
APP_TABLES = (
    st.tuples(VALID_APPS, st.dictionaries(APP_KEYS_AND_MORE, TOML_SCALARS, max_size=2)).map(
        lambda pair: {**pair[0], **pair[1]}
    )
    | TOML_TABLES
)


@settings(max_examples=300)
@given(
    apps=st.dictionaries(st.sampled_from(["a", "x-main"]), APP_TABLES, min_size=1, max_size=2)
    | st.dictionaries(st.sampled_from(["a", "B", "1"]), TOML_TABLES, max_size=3),
    providers=st.just({"idp": {"extends": "oauth2", "urls": {"token": "https://idp.example/t"}}})
    | st.dictionaries(st.sampled_from(["idp", "tiktok", "p-2"]), TOML_TABLES, max_size=2),
)
def test_whatever_the_file_holds_it_is_a_configuration_or_an_error_naming_it(
    tmp_path_factory: pytest.TempPathFactory,
    apps: dict[str, dict[str, object]],
    providers: dict[str, dict[str, object]],
) -> None:
    path = tmp_path_factory.mktemp("config") / "config.toml"
    path.write_text(_toml({"apps": apps, "providers": providers}))
    try:
        configuration = load_configuration({CONFIG: str(path), "X_MAIN_SECRET": SECRET})
    except ConfigError as error:
        message = error.message
    else:
        assert set(configuration.apps) == set(apps)
        for each in configuration.apps.values():
            assert not each.profile.template
        return
    assert message.startswith(f"{path}: ") or message.startswith("cannot read")
    assert SECRET not in message


def _toml(document: dict[str, object]) -> str:
    """A small TOML writer for the test's documents (tables of scalars and tables)."""
    lines: list[str] = []
    for kind, tables in document.items():
        assert isinstance(tables, dict)
        for name, table in tables.items():
            lines.append(f"[{kind}.{json.dumps(name)}]")
            for key, value in table.items():
                lines.append(f"{json.dumps(key)} = {_value(value)}")
    return "\n".join(lines) + "\n"


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if value == value and abs(value) != float("inf") else "0.0"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def test_a_configuration_file_changed_between_reads_is_read_again(tmp_path: Path) -> None:
    # The file is read once while it stays as it is (each event looks up its app's
    # provider); an edit, even of the same length, is seen at the next read.
    config = tmp_path / "config.toml"
    config.write_text('[apps.x-main]\nprovider = "x"\nclient_id = "a"\nclient_secret_env = "S"\n')
    first = load_configuration({"TOKENREFRESH_CONFIG": str(config)})
    config.write_text('[apps.x-next]\nprovider = "x"\nclient_id = "a"\nclient_secret_env = "S"\n')
    second = load_configuration({"TOKENREFRESH_CONFIG": str(config)})
    config.unlink()

    assert list(first.apps) == ["x-main"]
    assert list(second.apps) == ["x-next"]
    with pytest.raises(ConfigError, match=r"config\.toml"):
        load_configuration({"TOKENREFRESH_CONFIG": str(config)})
