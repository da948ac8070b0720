"""Settings from the environment (NAME and NAME_FILE), database URL resolution, and how
configuration errors reach the command line: exit 3, the variable named, no secret shown.
"""

from __future__ import annotations

import base64
import logging
import os
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Engine

from conftest import Cli
from helpers import assert_only_a_refused_run_was_recorded, snapshot
from standin import TikTokStandIn
from tokenrefresh.base.events.checks import webhook_url_problem
from tokenrefresh.base.scrub import MASK, scrub
from tokenrefresh.base.settings import DEFAULT_API_BASE_URL, Secret, Settings, database_url_secrets
from tokenrefresh.errors import ConfigError
from tokenrefresh.storage import schema
from tokenrefresh.storage.engine import resolve_database_url

KEY_A = Fernet.generate_key().decode("ascii")
KEY_B = Fernet.generate_key().decode("ascii")
CLIENT_SECRET = "client-secret-value-do-not-print"


def config_error(environ: dict[str, str]) -> str:
    """The message of the ConfigError that loading these settings raises."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(environ)
    assert caught.value.exit_code == 3
    return caught.value.message


# ----------------------------------------------------------------------------- NAME, NAME_FILE


def test_nothing_set_gives_the_defaults() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.database_url is None
    assert settings.encryption_keys == ()
    assert settings.client_key is None
    assert settings.client_secret is None
    assert settings.api_base_url == DEFAULT_API_BASE_URL == "https://open.tiktokapis.com"


def test_values_are_read_from_the_variables() -> None:
    settings = Settings.from_env(
        {
            "TOKENREFRESH_DATABASE_URL": "postgresql://app:pw@db.internal/tokens",
            "TOKENREFRESH_ENCRYPTION_KEYS": f"{KEY_A},{KEY_B}",
            "TIKTOK_CLIENT_KEY": "aw1234",
            "TIKTOK_CLIENT_SECRET": CLIENT_SECRET,
            "TIKTOK_API_BASE_URL": "https://tiktok-proxy.example.com/",
        }
    )
    assert settings.database_url == Secret("postgresql://app:pw@db.internal/tokens")
    assert [key.reveal() for key in settings.encryption_keys] == [KEY_A, KEY_B]
    assert settings.client_key == "aw1234"
    assert settings.client_secret is not None
    assert settings.client_secret.reveal() == CLIENT_SECRET
    assert settings.api_base_url == "https://tiktok-proxy.example.com"
    credentials = settings.require_client_credentials()
    assert credentials.client_key == "aw1234"
    assert credentials.client_secret.reveal() == CLIENT_SECRET


def test_name_file_is_read_and_stripped(tmp_path: Path) -> None:
    secret_file = tmp_path / "client_secret"
    secret_file.write_text(f"\n  {CLIENT_SECRET}  \n\n", encoding="utf-8")
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"{KEY_A}, {KEY_B}\n", encoding="utf-8")
    settings = Settings.from_env(
        {
            "TIKTOK_CLIENT_SECRET_FILE": str(secret_file),
            "TOKENREFRESH_ENCRYPTION_KEYS_FILE": str(keys_file),
        }
    )
    assert settings.client_secret == Secret(CLIENT_SECRET)
    assert [key.reveal() for key in settings.encryption_keys] == [KEY_A, KEY_B]


def test_direct_values_are_stripped() -> None:
    settings = Settings.from_env(
        {"TIKTOK_CLIENT_KEY": "  aw1234\n", "TOKENREFRESH_ENCRYPTION_KEYS": f" {KEY_A} "}
    )
    assert settings.client_key == "aw1234"
    assert [key.reveal() for key in settings.encryption_keys] == [KEY_A]


def test_both_name_and_name_file_is_an_error_naming_both(tmp_path: Path) -> None:
    secret_file = tmp_path / "client_secret"
    secret_file.write_text(CLIENT_SECRET, encoding="utf-8")
    message = config_error(
        {"TIKTOK_CLIENT_SECRET": "other-secret", "TIKTOK_CLIENT_SECRET_FILE": str(secret_file)}
    )
    assert message == (
        "both TIKTOK_CLIENT_SECRET and TIKTOK_CLIENT_SECRET_FILE are set: use one of them"
    )
    assert CLIENT_SECRET not in message
    assert "other-secret" not in message


def test_missing_name_file_is_an_error_naming_the_variable_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-file"
    message = config_error({"TIKTOK_CLIENT_SECRET_FILE": str(missing)})
    assert message == (
        f"cannot read TIKTOK_CLIENT_SECRET_FILE ({missing}): No such file or directory"
    )


@pytest.mark.parametrize("content", ["", "   \n\n\t"], ids=["empty", "white-space"])
def test_empty_name_file_is_an_error(tmp_path: Path, content: str) -> None:
    secret_file = tmp_path / "client_secret"
    secret_file.write_text(content, encoding="utf-8")
    message = config_error({"TIKTOK_CLIENT_SECRET_FILE": str(secret_file)})
    assert message == f"TIKTOK_CLIENT_SECRET_FILE ({secret_file}) is empty"


def test_name_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    """A binary file mounted by mistake: a ConfigError naming the variable, not a traceback."""
    secret_file = tmp_path / "client_secret"
    secret_file.write_bytes(b"\xff\xfe" + CLIENT_SECRET.encode("utf-16-le"))
    message = config_error({"TIKTOK_CLIENT_SECRET_FILE": str(secret_file)})
    assert "TIKTOK_CLIENT_SECRET_FILE" in message
    assert str(secret_file) in message


@pytest.mark.parametrize("empty", ["", "   ", "\n"], ids=["empty", "spaces", "newline"])
def test_an_empty_variable_counts_as_unset(tmp_path: Path, empty: str) -> None:
    secret_file = tmp_path / "client_secret"
    secret_file.write_text(CLIENT_SECRET, encoding="utf-8")
    settings = Settings.from_env(
        {
            "TOKENREFRESH_DATABASE_URL": empty,
            "TOKENREFRESH_ENCRYPTION_KEYS": empty,
            "TIKTOK_CLIENT_KEY": empty,
            "TIKTOK_API_BASE_URL": empty,
            "TIKTOK_CLIENT_SECRET": empty,  # empty: the _FILE form is not "both set"
            "TIKTOK_CLIENT_SECRET_FILE": str(secret_file),
            "TOKENREFRESH_PING_URL_FILE": empty,
        }
    )
    assert settings.database_url is None
    assert settings.encryption_keys == ()
    assert settings.client_key is None
    assert settings.api_base_url == DEFAULT_API_BASE_URL
    assert settings.client_secret == Secret(CLIENT_SECRET)
    assert settings.ping_url is None


# ----------------------------------------------------------------------------- NAME_FILE modes


def secret_file_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "tokenrefresh.settings" and record.levelno == logging.WARNING
    ]


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o602, 0o666], ids=lambda mode: f"{mode:04o}")
def test_a_secret_file_open_to_others_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    caplog.set_level(logging.WARNING, logger="tokenrefresh.settings")
    secret_file = tmp_path / "client_secret"
    secret_file.write_text(CLIENT_SECRET, encoding="utf-8")
    secret_file.chmod(mode)
    settings = Settings.from_env({"TIKTOK_CLIENT_SECRET_FILE": str(secret_file)})
    assert settings.client_secret == Secret(CLIENT_SECRET)  # a warning, not an error
    assert secret_file_warnings(caplog) == [
        f"TIKTOK_CLIENT_SECRET_FILE ({secret_file}) can be read or written by any user "
        f"(mode {mode:04o}): it holds a secret; chmod 600 {secret_file}"
    ]
    assert CLIENT_SECRET[:8] not in caplog.text


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another group needs root")
@pytest.mark.parametrize("mode", [0o640, 0o620, 0o660, 0o440], ids=lambda mode: f"{mode:04o}")
def test_group_bits_for_a_group_this_process_is_not_in_are_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    caplog.set_level(logging.WARNING, logger="tokenrefresh.settings")
    secret_file = tmp_path / "client_secret"
    secret_file.write_text(CLIENT_SECRET, encoding="utf-8")
    stranger = 4242
    assert stranger not in {os.getegid(), *os.getgroups()}
    os.chown(secret_file, -1, stranger)
    secret_file.chmod(mode)
    Settings.from_env({"TIKTOK_CLIENT_SECRET_FILE": str(secret_file)})
    assert secret_file_warnings(caplog) == [
        f"TIKTOK_CLIENT_SECRET_FILE ({secret_file}) can be read or written by group {stranger}, "
        f"which this process is not in (mode {mode:04o}): it holds a secret; "
        f"chmod 600 {secret_file}"
    ]


def test_a_private_secret_file_is_not_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="tokenrefresh.settings")
    for name, content in [
        ("TIKTOK_CLIENT_SECRET", CLIENT_SECRET),
        ("TOKENREFRESH_ENCRYPTION_KEYS", KEY_A),
        ("TOKENREFRESH_DATABASE_URL", "postgresql://app:long-db-password@db/tokens"),
        ("TOKENREFRESH_PING_URL", "https://hc-ping.com/ping-uuid-secret"),
        ("TOKENREFRESH_CLEANUP_PING_URL", "https://hc-ping.com/cleanup-uuid-secret"),
    ]:
        (tmp_path / name).write_text(content, encoding="utf-8")
        (tmp_path / name).chmod(0o600)
    files = {f"{path.name}_FILE": str(path) for path in tmp_path.iterdir()}
    Settings.from_env(files)
    assert secret_file_warnings(caplog) == []


def test_every_secret_variable_is_checked_and_only_those(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tokenrefresh.settings")
    values = {
        "TIKTOK_CLIENT_SECRET": CLIENT_SECRET,
        "TOKENREFRESH_ENCRYPTION_KEYS": KEY_A,
        "TOKENREFRESH_DATABASE_URL": "postgresql://app:long-db-password@db/tokens",
        "TOKENREFRESH_PING_URL": "https://hc-ping.com/ping-uuid-secret",
        "TOKENREFRESH_CLEANUP_PING_URL": "https://hc-ping.com/cleanup-uuid-secret",
        "TIKTOK_CLIENT_KEY": "aw1234",  # not a secret
        "TIKTOK_API_BASE_URL": "https://open.tiktokapis.com",  # not a secret
    }
    environ = {}
    for name, content in values.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
        (tmp_path / name).chmod(0o644)
        environ[f"{name}_FILE"] = str(tmp_path / name)
    Settings.from_env(environ)
    warned = sorted(message.split(" ", 1)[0] for message in secret_file_warnings(caplog))
    assert warned == [
        "TIKTOK_CLIENT_SECRET_FILE",
        "TOKENREFRESH_CLEANUP_PING_URL_FILE",
        "TOKENREFRESH_DATABASE_URL_FILE",
        "TOKENREFRESH_ENCRYPTION_KEYS_FILE",
        "TOKENREFRESH_PING_URL_FILE",
    ]
    for content in values.values():
        assert content not in caplog.text


def test_the_mode_of_a_symlinked_secret_file_is_its_target_s(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Kubernetes mounts Secrets as symlinks (..data/name): the target's mode counts."""
    caplog.set_level(logging.WARNING, logger="tokenrefresh.settings")
    data = tmp_path / "..data"
    data.mkdir()
    (data / "client_secret").write_text(CLIENT_SECRET, encoding="utf-8")
    link = tmp_path / "client_secret"
    link.symlink_to(data / "client_secret")
    (data / "client_secret").chmod(0o600)
    Settings.from_env({"TIKTOK_CLIENT_SECRET_FILE": str(link)})
    assert secret_file_warnings(caplog) == []
    (data / "client_secret").chmod(0o644)
    Settings.from_env({"TIKTOK_CLIENT_SECRET_FILE": str(link)})
    assert secret_file_warnings(caplog) == [
        f"TIKTOK_CLIENT_SECRET_FILE ({link}) can be read or written by any user "
        f"(mode 0644): it holds a secret; chmod 600 {link}"
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_group_read_through_a_group_of_this_process_is_how_it_is_shared(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Kubernetes with fsGroup: a root-owned 0440 file, its group the pod's fsGroup, which
    the process has as a supplementary group. The process's own group counts too."""
    caplog.set_level(logging.WARNING, logger="tokenrefresh.settings")
    secret_file = tmp_path / "client_secret"
    secret_file.write_text(CLIENT_SECRET, encoding="utf-8")
    environ = {"TIKTOK_CLIENT_SECRET_FILE": str(secret_file)}
    fs_group = 4243
    groups = os.getgroups()
    assert fs_group not in {os.getegid(), *groups}
    os.chown(secret_file, 4242, fs_group)
    secret_file.chmod(0o440)
    os.setgroups([*groups, fs_group])  # as the kubelet starts the pod's process
    try:
        Settings.from_env(environ)
        assert secret_file_warnings(caplog) == []
    finally:
        os.setgroups(groups)
    Settings.from_env(environ)  # without that group, the same file is a stranger's
    assert len(secret_file_warnings(caplog)) == 1
    caplog.clear()
    for owner in (4242, os.geteuid()):  # the effective gid: ours, whoever owns the file
        os.chown(secret_file, owner, os.getegid())
        secret_file.chmod(0o640)
        Settings.from_env(environ)
        assert secret_file_warnings(caplog) == []
    secret_file.chmod(0o444)  # others too: that is a warning whoever owns it
    Settings.from_env(environ)
    assert len(secret_file_warnings(caplog)) == 1


# ----------------------------------------------------------------------------- encryption keys


def test_missing_encryption_keys_names_the_variable_and_keys_generate() -> None:
    settings = Settings.from_env({})
    with pytest.raises(ConfigError) as caught:
        settings.require_encryption_keys()
    assert caught.value.message == (
        "TOKENREFRESH_ENCRYPTION_KEYS is not set: it must hold one or more Fernet keys, comma "
        "separated (create one with `tokenrefresh keys generate`)"
    )
    assert caught.value.exit_code == 3


@pytest.mark.parametrize(
    ("value", "position"),
    [
        ("not-a-fernet-key", 1),
        (f"{KEY_A},c2hvcnQ=", 2),  # valid base64, 5 bytes
        (f"{KEY_A},{KEY_B[:-4]}", 2),  # truncated: 30 bytes
        (f"{KEY_A},{KEY_B},{KEY_B[:-8]}", 3),
        (f"{KEY_A},ключ-{KEY_B}", 2),  # not ASCII
    ],
    ids=["garbage", "too-short", "truncated", "third", "non-ascii"],
)
def test_a_malformed_key_is_named_by_position_never_echoed(value: str, position: int) -> None:
    message = config_error({"TOKENREFRESH_ENCRYPTION_KEYS": value})
    assert message == (
        f"TOKENREFRESH_ENCRYPTION_KEYS: key #{position} is not a Fernet key (32 url-safe "
        "base64-encoded bytes; create one with `tokenrefresh keys generate`)"
    )
    for part in value.split(","):
        assert part not in message


@pytest.mark.parametrize(
    ("value", "position"),
    [(f"{KEY_A},", 2), (f",{KEY_A}", 1), (f"{KEY_A},,{KEY_B}", 2), (f"{KEY_A}, ,{KEY_B}", 2)],
    ids=["trailing", "leading", "double", "blank"],
)
def test_a_stray_comma_is_named_by_position(value: str, position: int) -> None:
    message = config_error({"TOKENREFRESH_ENCRYPTION_KEYS": value})
    assert message == f"TOKENREFRESH_ENCRYPTION_KEYS: key #{position} is empty (stray comma?)"
    assert KEY_A not in message
    assert KEY_B not in message


# A fixed key, so that "no fragment of the key in the message" does not depend on chance.
FIXED_KEY = base64.urlsafe_b64encode(bytes(range(32))).decode("ascii")
OTHER_KEY = base64.urlsafe_b64encode(bytes(range(100, 132))).decode("ascii")
NOT_A_FERNET_KEY = (
    "is not a Fernet key (32 url-safe base64-encoded bytes; create one with "
    "`tokenrefresh keys generate`)"
)
NOT_SEPARATED = (
    "holds white space or another separator: keys are separated by commas "
    "(spaces around a comma are fine)"
)


def assert_no_fragment_of(message: str, *keys: str) -> None:
    for key in keys:
        for start in range(len(key) - 5):
            assert key[start : start + 6] not in message, key[start : start + 6]


@pytest.mark.parametrize(
    ("value", "position", "problem"),
    [
        (f"{FIXED_KEY[:10]}+{FIXED_KEY[11:]}", 1, NOT_A_FERNET_KEY),
        (f"{OTHER_KEY},{FIXED_KEY[:10]}/{FIXED_KEY[11:]}", 2, NOT_A_FERNET_KEY),
        (f"{FIXED_KEY[:10]}.{FIXED_KEY[10:]}", 1, NOT_A_FERNET_KEY),
        (f"{FIXED_KEY[:20]} {FIXED_KEY[20:]}", 1, NOT_SEPARATED),
        (f"{OTHER_KEY},{FIXED_KEY[:20]}\t{FIXED_KEY[20:]}", 2, NOT_SEPARATED),
        (FIXED_KEY[:-1], 1, NOT_A_FERNET_KEY),  # 43 characters
        (f"{FIXED_KEY[:-1]}A=", 1, NOT_A_FERNET_KEY),  # 45 characters
        (f"{FIXED_KEY}=", 1, NOT_A_FERNET_KEY),  # 45 characters
        (f"A{FIXED_KEY}", 1, NOT_A_FERNET_KEY),  # 45 characters
        (f"{FIXED_KEY[:-1]}A", 1, NOT_A_FERNET_KEY),  # 44, without the final =
        (f"{FIXED_KEY}\n{OTHER_KEY}", 1, NOT_SEPARATED),
        (f"{OTHER_KEY},{FIXED_KEY}\r\n{OTHER_KEY}", 2, NOT_SEPARATED),
        (f"{FIXED_KEY};{OTHER_KEY}", 1, NOT_SEPARATED),
        (f"{FIXED_KEY} {OTHER_KEY}", 1, NOT_SEPARATED),
        (f"{FIXED_KEY},\n{OTHER_KEY}", 2, NOT_SEPARATED),
        (f"{FIXED_KEY}\u00a0,{OTHER_KEY}", 1, NOT_SEPARATED),  # only spaces and tabs
    ],
    ids=[
        "plus",
        "slash",
        "dot",
        "space-inside",
        "tab-inside",
        "43-chars",
        "45-chars",
        "extra-padding",
        "extra-leading",
        "no-padding",
        "newline-joined",
        "crlf-joined",
        "semicolon-joined",
        "space-joined",
        "newline-after-comma",
        "no-break-space",
    ],
)
def test_keys_are_validated_strictly(value: str, position: int, problem: str) -> None:
    message = config_error({"TOKENREFRESH_ENCRYPTION_KEYS": value})
    assert message == f"TOKENREFRESH_ENCRYPTION_KEYS: key #{position} {problem}"
    assert_no_fragment_of(message, FIXED_KEY, OTHER_KEY)


@pytest.mark.parametrize(
    "value",
    [
        f"{FIXED_KEY},{OTHER_KEY}",
        f"{FIXED_KEY}, {OTHER_KEY}",
        f"{FIXED_KEY} ,\t{OTHER_KEY}",
        f"{FIXED_KEY}\t,  {OTHER_KEY}",
    ],
    ids=["comma", "space-after", "space-before-tab-after", "tab-before-spaces-after"],
)
def test_spaces_and_tabs_around_a_comma_are_allowed(value: str) -> None:
    settings = Settings.from_env({"TOKENREFRESH_ENCRYPTION_KEYS": value})
    assert [key.reveal() for key in settings.encryption_keys] == [FIXED_KEY, OTHER_KEY]


def test_every_generated_key_is_accepted() -> None:
    keys = [Fernet.generate_key().decode("ascii") for _ in range(50)]
    settings = Settings.from_env({"TOKENREFRESH_ENCRYPTION_KEYS": ",".join(keys)})
    assert [key.reveal() for key in settings.encryption_keys] == keys


# ----------------------------------------------------------------------------- API base URL


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://open.tiktokapis.com", "https://open.tiktokapis.com"),
        ("https://tiktok-proxy.example.com/", "https://tiktok-proxy.example.com"),
        ("https://proxy.example.com:8443/tiktok/", "https://proxy.example.com:8443/tiktok"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.3.4.5:9", "http://127.3.4.5:9"),
        ("http://[::1]:8080/", "http://[::1]:8080"),
        ("http://localhost:8080", "http://localhost:8080"),
        ("http://LOCALHOST:8080", "http://LOCALHOST:8080"),
    ],
)
def test_api_base_url_accepted(value: str, expected: str) -> None:
    assert Settings.from_env({"TIKTOK_API_BASE_URL": value}).api_base_url == expected


@pytest.mark.parametrize(
    ("value", "host"),
    [
        ("http://example.com", "example.com"),
        ("http://open.tiktokapis.com/", "open.tiktokapis.com"),
        ("http://localhost.example.com", "localhost.example.com"),
        ("http://127.0.0.1.nip.io", "127.0.0.1.nip.io"),
        ("http://0.0.0.0:8080", "0.0.0.0"),  # noqa: S104 - a refused URL, nothing binds
        ("http://10.0.0.1", "10.0.0.1"),
    ],
)
def test_plain_http_is_refused_unless_loopback(value: str, host: str) -> None:
    assert config_error({"TIKTOK_API_BASE_URL": value}) == (
        "TIKTOK_API_BASE_URL: plain http:// is only allowed for a loopback host "
        f"(127.0.0.1, ::1, localhost), not {host!r}; use https://"
    )


@pytest.mark.parametrize(
    "value",
    [
        "https://user:hunter2@open.tiktokapis.com",
        "https://open.tiktokapis.com/?client_secret=hunter2",
        "https://open.tiktokapis.com/#hunter2",
        "http://user:hunter2@127.0.0.1:8080",
    ],
    ids=["credentials", "query", "fragment", "loopback-credentials"],
)
def test_api_base_url_with_credentials_or_query_is_refused(value: str) -> None:
    message = config_error({"TIKTOK_API_BASE_URL": value})
    assert message == "TIKTOK_API_BASE_URL must not carry credentials, a query or a fragment"


@pytest.mark.parametrize(
    "value", ["open.tiktokapis.com", "ftp://open.tiktokapis.com", "https://", "https:///v2"]
)
def test_api_base_url_that_is_not_https_is_refused(value: str) -> None:
    assert config_error({"TIKTOK_API_BASE_URL": value}) == (
        "TIKTOK_API_BASE_URL must be an https:// URL with a host name"
    )


@pytest.mark.parametrize(
    "value", ["ftp://user:hunter2@open.tiktokapis.com", "https://user:hunter2@"]
)
def test_a_refused_api_base_url_never_echoes_a_password(value: str) -> None:
    message = config_error({"TIKTOK_API_BASE_URL": value})
    assert message.startswith("TIKTOK_API_BASE_URL ")
    assert "hunter2" not in message


# ----------------------------------------------------------------------------- secrets registered


def test_every_secret_loaded_is_scrubbed_from_then_on() -> None:
    client_secret = "registered-client-secret-0123456789"
    ping = "https://hc-ping.com/3f1c2b9e-registered-ping-uuid"
    cleanup_ping = "https://hc-ping.com/7a8b9c0d-registered-cleanup-uuid"
    password = "registered-db-password-42"
    key = Fernet.generate_key().decode("ascii")
    other_key = Fernet.generate_key().decode("ascii")
    before = f"x {client_secret[3:20]} y"
    assert scrub(before) == before
    Settings.from_env(
        {
            "TIKTOK_CLIENT_SECRET": client_secret,
            "TOKENREFRESH_ENCRYPTION_KEYS": f"{key}, {other_key}",
            "TOKENREFRESH_PING_URL": ping,
            "TOKENREFRESH_CLEANUP_PING_URL": cleanup_ping,
            "TOKENREFRESH_DATABASE_URL": f"postgresql://app:{password}@db/tokens",
        }
    )
    for secret in (client_secret, key, other_key, ping, cleanup_ping, password):
        assert scrub(f"x {secret[3:20]} y") == f"x {MASK} y", secret
        assert scrub(f"x {secret.upper()} y") == f"x {MASK} y", secret


def test_the_database_password_is_scrubbed_in_every_place_it_can_sit() -> None:
    Settings.from_env(
        {
            "TOKENREFRESH_DATABASE_URL": (
                "postgresql://app:p%40ss%2Fword-in-userinfo@db/tokens"
                "?password=query-pass%20word-0001&SSLPassword=ssl-key-password-0002"
            )
        }
    )
    for shown in (
        "p@ss/word-in-userinfo",
        "p%40ss%2Fword-in-userinfo",
        "query-pass word-0001",
        "query-pass%20word-0001",
        "ssl-key-password-0002",
    ):
        assert MASK in scrub(f"driver said: {shown}"), shown


def test_a_password_with_an_unencoded_at_is_scrubbed_whole() -> None:
    Settings.from_env({"TOKENREFRESH_DATABASE_URL": "postgresql://app:my@unencoded@db.internal/x"})
    # psycopg then says: failed to resolve host 'unencoded@db.internal'
    assert scrub("failed to resolve host 'my@unencoded@db.internal'") == (
        f"failed to resolve host '{MASK}@db.internal'"
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://app@db/tokens", set()),
        ("sqlite:////var/lib/tokenrefresh/t.db", set()),
        ("postgresql://app:secret@db/tokens", {"secret"}),
        ("postgresql://app:p%40ss%2Fw@db/tokens", {"p@ss/w", "p%40ss%2Fw"}),
        ("postgresql://app:pa/ss?x@db:5432/tokens", {"pa/ss?x"}),
        ("postgresql://app:a+b@db/tokens", {"a+b"}),
        ("postgresql://app:p@ss@db/tokens", {"p", "p@ss"}),
        ("postgresql://app:p@ss@word@db/tokens", {"p", "p@ss@word"}),
        ("postgresql://app@db/tokens?password=pw%201&sslmode=require", {"pw%201", "pw 1"}),
        ("postgresql://app@db/tokens?sslmode=require&PASSWORD=a+b", {"a+b", "a b"}),
        ("postgresql://app@db/tokens?sslpassword=kp&password=", {"kp"}),
        ("postgresql://app:x@db/t?SslPassword=k1&password=k2", {"x", "k1", "k2"}),
        ("postgresql://db/tokens?options=-c%20x%3Dpassword", set()),
        ("not a url password=hunter22", {"hunter22"}),
    ],
)
def test_database_url_secrets(url: str, expected: set[str]) -> None:
    assert set(database_url_secrets(url)) == expected


# ----------------------------------------------------------------------------- Secret


def test_secret_never_shows_its_value() -> None:
    secret = Secret(CLIENT_SECRET)
    for shown in (repr(secret), str(secret), f"{secret}", f"{secret!r}", format(secret)):
        assert CLIENT_SECRET not in shown
        assert shown == "Secret('**********')"
    assert repr([secret]) == "[Secret('**********')]"
    assert secret.reveal() == CLIENT_SECRET
    assert not hasattr(secret, "__dict__")


def test_settings_repr_shows_no_secret() -> None:
    settings = Settings.from_env(
        {
            "TOKENREFRESH_DATABASE_URL": "postgresql://app:db-password-1@db/tokens",
            "TOKENREFRESH_ENCRYPTION_KEYS": f"{KEY_A},{KEY_B}",
            "TIKTOK_CLIENT_KEY": "aw1234",
            "TIKTOK_CLIENT_SECRET": CLIENT_SECRET,
            "TOKENREFRESH_PING_URL": "https://hc-ping.com/ping-uuid-secret",
        }
    )
    shown = repr(settings) + repr(settings.require_client_credentials())
    for value in (CLIENT_SECRET, KEY_A, KEY_B, "db-password-1", "ping-uuid-secret"):
        assert value not in shown
    assert "aw1234" in shown  # the client key is not a secret


def test_missing_client_credentials_are_named() -> None:
    for environ, expected in [
        ({}, "TIKTOK_CLIENT_KEY and TIKTOK_CLIENT_SECRET are not set"),
        ({"TIKTOK_CLIENT_KEY": "aw1234"}, "TIKTOK_CLIENT_SECRET is not set"),
        ({"TIKTOK_CLIENT_SECRET": CLIENT_SECRET}, "TIKTOK_CLIENT_KEY is not set"),
    ]:
        with pytest.raises(ConfigError) as caught:
            Settings.from_env(environ).require_client_credentials()
        assert caught.value.message == (
            f"{expected}: the TikTok app's credentials are needed to refresh tokens"
        )
        assert CLIENT_SECRET not in caught.value.message


# ----------------------------------------------------------------------------- database URL


def database_url(value: str) -> str:
    url = resolve_database_url(Settings.from_env({"TOKENREFRESH_DATABASE_URL": value}))
    return url.render_as_string(hide_password=False)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("postgres://app:pw@db:5432/tokens", "postgresql+psycopg://app:pw@db:5432/tokens"),
        ("postgresql://app:pw@db/tokens", "postgresql+psycopg://app:pw@db/tokens"),
        ("postgresql+psycopg://app@db/tokens", "postgresql+psycopg://app@db/tokens"),
        (
            "postgresql://app@db/tokens?sslmode=require",
            "postgresql+psycopg://app@db/tokens?sslmode=require",
        ),
        ("sqlite:////var/lib/tokenrefresh/t.db", "sqlite:////var/lib/tokenrefresh/t.db"),
    ],
)
def test_database_url_resolution(value: str, expected: str) -> None:
    assert database_url(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "postgresql+psycopg2://app:pw@db/tokens",
            "TOKENREFRESH_DATABASE_URL: the driver 'psycopg2' is not supported; use "
            "postgresql:// (psycopg 3 is installed with tokenrefresh)",
        ),
        (
            "postgresql+asyncpg://app:pw@db/tokens",
            "TOKENREFRESH_DATABASE_URL: the driver 'asyncpg' is not supported; use "
            "postgresql:// (psycopg 3 is installed with tokenrefresh)",
        ),
        (
            "mysql://app:pw@db/tokens",
            "TOKENREFRESH_DATABASE_URL: 'mysql' is not supported; use postgresql:// or sqlite:///",
        ),
        (
            "redis://:pw@cache/0",
            "TOKENREFRESH_DATABASE_URL: 'redis' is not supported; use postgresql:// or sqlite:///",
        ),
        (
            "sqlite+pysqlcipher://:pw@/t.db",
            "TOKENREFRESH_DATABASE_URL: the SQLite driver 'pysqlcipher' is not supported",
        ),
    ],
)
def test_unsupported_database_urls_are_refused(value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        database_url(value)
    assert caught.value.message == expected
    assert "pw@" not in caught.value.message


@pytest.mark.parametrize(
    "value", ["sqlite://", "sqlite:///:memory:", "sqlite:///file:tokens?mode=memory&uri=true"]
)
def test_in_memory_sqlite_is_refused(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        database_url(value)
    assert caught.value.message == (
        "TOKENREFRESH_DATABASE_URL: SQLite needs a file path (sqlite:////abs/path.db); an "
        "in-memory database would forget every token when the command ends"
    )


@pytest.mark.parametrize("value", ["not a url", "db.internal:5432", "://app:pw@db"])
def test_garbage_database_url_is_refused_without_echo(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        database_url(value)
    assert caught.value.message == (
        "TOKENREFRESH_DATABASE_URL is not a database URL: expected e.g. "
        "postgresql://user@host/dbname or sqlite:////path/to/tokenrefresh.db"
    )


def test_default_database_is_in_the_xdg_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    url = resolve_database_url(Settings.from_env({}))
    assert url.get_backend_name() == "sqlite"
    assert url.database == str(tmp_path / "xdg" / "tokenrefresh" / "tokenrefresh.db")


def test_default_database_falls_back_to_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    url = resolve_database_url(Settings.from_env({}))
    expected = tmp_path / "home" / ".local" / "share" / "tokenrefresh" / "tokenrefresh.db"
    assert url.database == str(expected)


# ----------------------------------------------------------------------------- on the CLI


# (accounts, the settings changed, given the valid keys; the exact error)
REFUSED_SETTINGS = [
    pytest.param(
        2,
        lambda keys: {"TOKENREFRESH_ENCRYPTION_KEYS": None},
        "error: TOKENREFRESH_ENCRYPTION_KEYS is not set: it must hold one or more Fernet keys, "
        "comma separated (create one with `tokenrefresh keys generate`)\n",
        id="without-encryption-keys",
    ),
    pytest.param(
        2,
        lambda keys: {"TIKTOK_CLIENT_SECRET": ""},
        "error: TIKTOK_CLIENT_SECRET is not set: the TikTok app's credentials are needed to "
        "refresh tokens\n",
        id="without-client-secret",
    ),
    pytest.param(
        1,
        lambda keys: {"TOKENREFRESH_ENCRYPTION_KEYS": f"{keys},{KEY_B[:20]}"},
        "error: TOKENREFRESH_ENCRYPTION_KEYS: key #2 is not a Fernet key (32 url-safe "
        "base64-encoded bytes; create one with `tokenrefresh keys generate`)\n",
        id="malformed-key-without-echo",
    ),
    pytest.param(
        1,
        lambda keys: {"TIKTOK_API_BASE_URL": "http://example.com"},
        "error: TIKTOK_API_BASE_URL: plain http:// is only allowed for a loopback host "
        "(127.0.0.1, ::1, localhost), not 'example.com'; use https://\n",
        id="refused-api-base-url",
    ),
]


@pytest.mark.parametrize(("accounts", "settings", "stderr"), REFUSED_SETTINGS)
def test_refresh_with_refused_settings_exits_3_and_calls_nothing(
    cli: Cli,
    standin: TikTokStandIn,
    add_accounts,
    engine: Engine,
    env: dict[str, str],
    accounts: int,
    settings: Callable[[str], dict[str, str | None]],
    stderr: str,
) -> None:
    """Nothing printed on stdout, no key (nor a piece of the malformed one) repeated, nothing
    sent to TikTok, and only the refused run recorded."""
    add_accounts(accounts)
    keys = env["TOKENREFRESH_ENCRYPTION_KEYS"]
    before = snapshot(engine)
    result = cli("refresh", "--window", "3h", env=settings(keys))
    assert result.exit_code == 3
    assert result.stderr == stderr
    assert result.stdout == ""
    assert KEY_B[:20] not in result.stderr
    assert keys not in result.stdout + result.stderr
    assert standin.received == []
    assert_only_a_refused_run_was_recorded(engine, before, result.stderr)


def test_secrets_from_files_work_for_a_real_refresh(
    cli: Cli, standin: TikTokStandIn, add_accounts, env: dict[str, str], tmp_path: Path
) -> None:
    issued = add_accounts(1)
    secret_file = tmp_path / "client_secret"
    secret_file.write_text(standin.client_secret + "\n", encoding="utf-8")
    keys_file = tmp_path / "keys"
    keys_file.write_text(env["TOKENREFRESH_ENCRYPTION_KEYS"] + "\n", encoding="utf-8")
    result = cli(
        "refresh",
        "--window",
        "3h",
        "--json",
        env={
            "TIKTOK_CLIENT_SECRET": None,
            "TIKTOK_CLIENT_SECRET_FILE": str(secret_file),
            "TOKENREFRESH_ENCRYPTION_KEYS": None,
            "TOKENREFRESH_ENCRYPTION_KEYS_FILE": str(keys_file),
        },
    )
    assert result.exit_code == 0, result.stderr
    assert result.json()["counts"]["refreshed"] == 1
    assert standin.presented()[issued[0].refresh_token] == 1
    assert standin.received[0].form["client_secret"] == standin.client_secret
    assert standin.client_secret not in result.stdout + result.stderr


def test_accounts_list_needs_neither_keys_nor_tiktok_credentials(
    cli: Cli, add_accounts, standin: TikTokStandIn
) -> None:
    add_accounts(1)
    result = cli(
        "accounts",
        "list",
        "--json",
        env={
            "TOKENREFRESH_ENCRYPTION_KEYS": None,
            "TIKTOK_CLIENT_KEY": None,
            "TIKTOK_CLIENT_SECRET": None,
        },
    )
    assert result.exit_code == 0, result.stderr
    assert [account["open_id"] for account in result.json()["accounts"]] == ["user0"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_default_database_is_created_private_and_migrated(
    cli: Cli, standin: TikTokStandIn, tmp_path: Path
) -> None:
    data_home = Path(os.environ["XDG_DATA_HOME"])  # set by the env fixture, inside tmp_path
    assert data_home.is_relative_to(tmp_path)
    path = data_home / "tokenrefresh" / "tokenrefresh.db"
    assert not path.exists()
    no_url = {"TOKENREFRESH_DATABASE_URL": None}

    listed = cli("accounts", "list", env=no_url)
    assert listed.exit_code == 0, listed.stderr
    assert listed.stdout == "No accounts.\n"
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    with sqlite3.connect(path) as connection:
        (revision,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    assert revision == schema.HEAD_REVISION

    tokens = standin.issue("default-db-user")
    line = (
        f'{{"open_id": "{tokens.open_id}", "access_token": "{tokens.access_token}", '
        f'"refresh_token": "{tokens.refresh_token}", "expires_in": 7200, '
        f'"refresh_expires_in": 86400}}\n'
    )
    imported = cli("accounts", "import", input=line, env=no_url)
    assert imported.exit_code == 0, imported.stderr
    shown = cli("accounts", "list", "--json", env=no_url)
    assert [a["open_id"] for a in shown.json()["accounts"]] == ["default-db-user"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with sqlite3.connect(tmp_path / "data" / "tokenrefresh.db") as unused:
        # The test's own sqlite_url was never used.
        assert unused.execute("SELECT count(*) FROM accounts").fetchone() == (0,)
    unused.close()


# ----------------------------------------------------------------------------- webhooks, digests

WEBHOOK_URL = "https://receiver.hooks-test.invalid/wh-7f3a9c"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"webhook-secret-for-settings-tests").decode()
NOTIFY_URLS = "mailtos://user:mailpass-9d2e7b@smtp.tokenrefresh-test.invalid, json://h.invalid/x"


def test_webhook_and_notify_settings_are_read_as_secrets(tmp_path: Path) -> None:
    secret_file = tmp_path / "webhook-secret"
    secret_file.write_text(WEBHOOK_SECRET + "\n")
    secret_file.chmod(0o600)
    settings = Settings.from_env(
        {
            "TOKENREFRESH_WEBHOOK_URL": WEBHOOK_URL,
            "TOKENREFRESH_WEBHOOK_SECRET_FILE": str(secret_file),
            "TOKENREFRESH_NOTIFY_URLS": NOTIFY_URLS,
        }
    )
    assert settings.webhook_url == Secret(WEBHOOK_URL)
    assert settings.webhook_secret == Secret(WEBHOOK_SECRET)
    assert settings.notify_urls == Secret(NOTIFY_URLS)
    shown = scrub(f"{WEBHOOK_URL} {WEBHOOK_SECRET} {WEBHOOK_SECRET[6:]} {NOTIFY_URLS} {settings}")
    for value in (WEBHOOK_URL, WEBHOOK_SECRET[6:18], "mailpass-9d2e7b", "wh-7f3a9c"):
        assert value not in shown
    assert MASK in shown


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"TOKENREFRESH_WEBHOOK_URL": WEBHOOK_URL}, "TOKENREFRESH_WEBHOOK_SECRET is not"),
        ({"TOKENREFRESH_WEBHOOK_SECRET": WEBHOOK_SECRET}, "TOKENREFRESH_WEBHOOK_URL is not"),
    ],
)
def test_a_webhook_needs_both_url_and_secret(environ: dict[str, str], named: str) -> None:
    message = config_error(environ)
    assert named in message
    assert "TOKENREFRESH_WEBHOOK_URL and TOKENREFRESH_WEBHOOK_SECRET" in message


@pytest.mark.parametrize(
    ("url", "secret", "problem"),
    [
        ("http://receiver.tokenrefresh-test.invalid/wh", WEBHOOK_SECRET, "must use https://"),
        ("ftp://receiver.tokenrefresh-test.invalid/wh", WEBHOOK_SECRET, "https:// URL"),
        (WEBHOOK_URL, WEBHOOK_SECRET[6:], "TOKENREFRESH_WEBHOOK_SECRET must start with 'whsec_'"),
        (WEBHOOK_URL, "whsec_" + base64.b64encode(b"short").decode(), "between 24 and 64"),
    ],
)
def test_webhook_settings_are_checked_without_repeating_them(
    url: str, secret: str, problem: str
) -> None:
    message = config_error({"TOKENREFRESH_WEBHOOK_URL": url, "TOKENREFRESH_WEBHOOK_SECRET": secret})
    assert problem in message
    assert url not in message
    assert secret.removeprefix("whsec_")[:12] not in message


@pytest.mark.parametrize(
    "secret",
    [
        "not-whsec-at-all",
        "whsec_not base64!",
        "whsec_" + base64.b64encode(b"short").decode(),
        "whsec_" + base64.b64encode(bytes(65)).decode(),
    ],
)
def test_a_malformed_webhook_secret_points_to_events_secret(secret: str) -> None:
    message = config_error(
        {"TOKENREFRESH_WEBHOOK_URL": WEBHOOK_URL, "TOKENREFRESH_WEBHOOK_SECRET": secret}
    )
    assert message.startswith("TOKENREFRESH_WEBHOOK_SECRET must ")
    assert message.endswith(" (create one with `tokenrefresh events secret`)")


def test_events_secret_prints_a_new_secret_that_the_settings_accept(cli: Cli) -> None:
    first, second = cli("events", "secret"), cli("events", "secret")
    assert (first.exit_code, first.stderr, second.exit_code) == (0, "", 0)
    secret = first.stdout.removesuffix("\n")
    assert first.stdout == secret + "\n"
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert second.stdout != first.stdout  # random each time
    settings = Settings.from_env(
        {"TOKENREFRESH_WEBHOOK_URL": WEBHOOK_URL, "TOKENREFRESH_WEBHOOK_SECRET": secret}
    )
    assert settings.webhook_secret == Secret(secret)


def test_plain_http_webhooks_are_allowed_to_loopback_only() -> None:
    # Checked without Settings: a loaded URL is registered as a secret for the whole
    # process, and a loopback one would mask every other test's stand-in URL.
    for url in ("http://127.0.0.1:8080/wh", "http://127.9.9.9/wh", "http://[::1]/wh"):
        assert webhook_url_problem(url) is None
    for url in ("http://localhost/wh", "http://LOCALHOST:1/wh"):
        assert webhook_url_problem(url) is None
    for url in ("http://10.0.0.1/wh", "http://127.0.0.1.nip.io/wh", "http://[::2]/wh"):
        assert "must use https://" in (webhook_url_problem(url) or "")


def test_notify_urls_must_look_like_urls() -> None:
    message = config_error({"TOKENREFRESH_NOTIFY_URLS": "json://h.invalid/x, not-a-url-secret"})
    assert message == "TOKENREFRESH_NOTIFY_URLS URL #2 is not a URL (scheme://...)"
