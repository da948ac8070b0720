"""Operator input that could hang or flood a run: a NAME_FILE that is a FIFO, a device or a
huge file, and a TIKTOK_API_BASE_URL that no call can use. Each is a configuration error
(exit 3) that names the variable, before anything runs: nothing changes, TikTok is not
called, and the refused run is recorded for `status`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from conftest import Cli, process_env
from helpers import assert_only_a_refused_run_was_recorded, counts, runs, snapshot
from standin import IssuedTokens, TikTokStandIn
from tokenrefresh.base.envfile import MAX_FILE_BYTES
from tokenrefresh.base.settings import Settings
from tokenrefresh.errors import ConfigError

RunProcess = Callable[..., subprocess.CompletedProcess[str]]
NOT_REGULAR = "not a regular file: point it at a file that holds the value"
# Every variable Settings reads, each through the one reader of NAME_FILE.
EVERY_VARIABLE = [
    "TOKENREFRESH_DATABASE_URL",
    "TOKENREFRESH_ENCRYPTION_KEYS",
    "TIKTOK_CLIENT_KEY",
    "TIKTOK_CLIENT_SECRET",
    "TIKTOK_API_BASE_URL",
    "TOKENREFRESH_PING_URL",
    "TOKENREFRESH_CLEANUP_PING_URL",
    "TOKENREFRESH_WEBHOOK_URL",
    "TOKENREFRESH_WEBHOOK_SECRET",
    "TOKENREFRESH_NOTIFY_URLS",
]


def config_error(environ: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(environ)
    return caught.value.message


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "secret.fifo"
    os.mkfifo(path)
    return path


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "secret.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        yield path


# ----------------------------------------------------------------------------- NAME_FILE


@pytest.mark.parametrize("name", EVERY_VARIABLE)
def test_every_name_file_must_be_a_regular_file(
    name: str, tmp_path: Path, unix_socket: Path
) -> None:
    for path, kind in [
        (tmp_path, "a directory"),
        (Path("/dev/null"), "a character device"),
        (unix_socket, "a socket"),
    ]:
        assert (
            config_error({f"{name}_FILE": str(path)})
            == f"{name}_FILE ({path}) is {kind}, {NOT_REGULAR}"
        )


@pytest.mark.parametrize("name", EVERY_VARIABLE)
def test_every_name_file_is_read_to_64_kib_at_most(name: str, tmp_path: Path) -> None:
    huge = tmp_path / "huge"
    huge.write_bytes(b"x" * (MAX_FILE_BYTES + 1))
    assert config_error({f"{name}_FILE": str(huge)}) == (
        f"{name}_FILE ({huge}) is larger than 64 KiB: it should hold one value "
        "(is it the right file?)"
    )


def test_a_name_file_of_exactly_64_kib_is_read(tmp_path: Path) -> None:
    secret = "client-secret-at-the-limit"
    exact = tmp_path / "secret"
    exact.write_text(secret + " " * (MAX_FILE_BYTES - len(secret) - 1) + "\n", encoding="utf-8")
    assert exact.stat().st_size == MAX_FILE_BYTES
    settings = Settings.from_env({"TIKTOK_CLIENT_SECRET_FILE": str(exact)})
    assert settings.client_secret is not None
    assert settings.client_secret.reveal() == secret


def test_a_name_file_through_symlinks_is_read_as_kubernetes_mounts_it(tmp_path: Path) -> None:
    # A Kubernetes Secret volume: name -> ..data/name, ..data -> ..2026_01_01_00_00_00.1/
    version = tmp_path / "..2026_01_01_00_00_00.1"
    version.mkdir()
    (version / "client_secret").write_text("mounted-client-secret\n", encoding="utf-8")
    (version / "client_secret").chmod(0o600)
    (tmp_path / "..data").symlink_to(version.name)
    (tmp_path / "client_secret").symlink_to("..data/client_secret")
    settings = Settings.from_env({"TIKTOK_CLIENT_SECRET_FILE": str(tmp_path / "client_secret")})
    assert settings.client_secret is not None
    assert settings.client_secret.reveal() == "mounted-client-secret"


FLOODS = {
    # name: (what its NAME_FILE points at, what it is)
    "TIKTOK_CLIENT_SECRET": ("fifo", "a named pipe (FIFO)"),
    "TOKENREFRESH_ENCRYPTION_KEYS": ("link-to-fifo", "a named pipe (FIFO)"),
    "TOKENREFRESH_PING_URL": ("/dev/zero", "a character device"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", FLOODS, ids=[where for where, _ in FLOODS.values()])
def test_a_fifo_or_endless_device_stops_a_real_run_at_once(
    run_process: RunProcess,
    add_accounts: Callable[..., object],
    engine: Engine,
    env: dict[str, str],
    standin: TikTokStandIn,
    fifo: Path,
    tmp_path: Path,
    name: str,
) -> None:
    """In a real process: a FIFO nobody writes would block it forever (also through a
    symlink), /dev/zero would fill its memory. The timeout is generous: the refusal comes
    before anything is read."""
    where, kind = FLOODS[name]
    path = {"fifo": fifo, "link-to-fifo": tmp_path / "link"}.get(where, Path(where))
    if where == "link-to-fifo":
        path.symlink_to(fifo)
    add_accounts(2)
    before = snapshot(engine)
    result = run_process("refresh", env={name: "", f"{name}_FILE": str(path)}, timeout=60)
    assert result.returncode == 3
    assert result.stderr == f"error: {name}_FILE ({path}) is {kind}, {NOT_REGULAR}\n"
    assert result.stdout == ""
    assert standin.received == []
    assert_only_a_refused_run_was_recorded(engine, before, result.stderr)


# ----------------------------------------------------------------------------- TIKTOK_API_BASE_URL

PORT_RANGE = "TIKTOK_API_BASE_URL: the port must be a number from 1 to 65535"
BAD_BASE_URLS = {
    "http://127.0.0.1:99999": PORT_RANGE,
    "http://127.0.0.1:0": PORT_RANGE,
    "http://127.0.0.1:80a": PORT_RANGE,
    "https://user:hunter2@open.tiktokapis.com:65536": PORT_RANGE,
    "http://[::1": (
        "TIKTOK_API_BASE_URL is not a valid URL: an IPv6 address stands in brackets, "
        "as in http://[::1]:8080"
    ),
    "https://open tiktokapis.com": (
        "TIKTOK_API_BASE_URL: the host is not a valid host name or IP address"
    ),
    "https://open..tiktokapis.com": (
        "TIKTOK_API_BASE_URL: the host is not a valid host name or IP address"
    ),
}


@pytest.mark.parametrize(("value", "expected"), BAD_BASE_URLS.items(), ids=list(BAD_BASE_URLS))
def test_a_malformed_api_base_url_is_named(value: str, expected: str) -> None:
    message = config_error({"TIKTOK_API_BASE_URL": value})
    assert message == expected
    assert "hunter2" not in message


@pytest.mark.parametrize(
    "value", ["http://127.0.0.1:65535", "https://open.tiktokapis.com:443/", "http://[::1]:1"]
)
def test_ports_in_range_are_accepted(value: str) -> None:
    assert Settings.from_env({"TIKTOK_API_BASE_URL": value}).api_base_url == value.rstrip("/")


@pytest.mark.parametrize("value", ["http://127.0.0.1:99999", "http://[::1"])
def test_a_malformed_api_base_url_stops_a_run_before_any_account_is_tried(
    cli: Cli, standin: TikTokStandIn, add_accounts, engine: Engine, value: str
) -> None:
    """Not a transport failure on every account, each counted and backed off: exit 3
    before the run, every account's attempts, failures and next try as they were."""
    add_accounts(3)
    before = snapshot(engine)
    result = cli("refresh", "--window", "3h", env={"TIKTOK_API_BASE_URL": value})
    assert result.exit_code == 3
    assert result.stderr == f"error: {BAD_BASE_URLS[value]}\n"
    assert result.stdout == ""
    assert standin.received == []
    assert_only_a_refused_run_was_recorded(engine, before, result.stderr)


# ----------------------------------------------------------------------------- a closed pipe


def run_into_closed_pipe(env: dict[str, str], *args: str) -> tuple[int, str]:
    """`tokenrefresh ARGS | head -0`, deterministically: the reading end is closed before
    the process starts, so its first write to stdout finds no reader. Buffered, as under
    cron: a write may then only fail at the last flush."""
    environ = {k: v for k, v in process_env(env).items() if k != "PYTHONUNBUFFERED"}
    reader, writer = os.pipe()
    os.close(reader)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "tokenrefresh", *args],
            env=environ,
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        os.close(writer)
    _, stderr = process.communicate(timeout=60)
    return process.returncode, stderr


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "args",
    [
        ("accounts", "list"),
        ("accounts", "show", "1"),
        ("accounts", "token", "1"),  # written unflushed: the last flush finds the pipe closed
        ("status",),
        ("status", "--json"),
        ("db", "current"),
        ("keys", "generate"),
        ("cleanup", "--dry-run"),
    ],
    ids=" ".join,
)
def test_output_into_a_closed_pipe_ends_quietly_with_141(
    env: dict[str, str], add_accounts: Callable[..., object], args: tuple[str, ...]
) -> None:
    add_accounts(1)
    code, stderr = run_into_closed_pipe(env, *args)
    assert (code, stderr) == (141, "")


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_refresh_into_a_closed_pipe_stores_its_tokens_and_ends_quietly(
    env: dict[str, str],
    add_accounts: Callable[..., list[IssuedTokens]],
    standin: TikTokStandIn,
    engine: Engine,
) -> None:
    [issued] = add_accounts(1)
    code, stderr = run_into_closed_pipe(env, "refresh", "--window", "3h", "--json")
    assert (code, stderr) == (141, "")
    assert standin.presented() == {issued.refresh_token: 1}
    [run] = runs(engine)
    assert (run["outcome"], run["exit_code"], run["counts"]) == ("ok", 0, counts(refreshed=1))
