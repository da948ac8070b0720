"""`--metrics-file` writes only a regular file, or a new file in an existing folder: a
symlink, a device, a FIFO, a socket or a directory at its path is refused by name, never
replaced, and the run's result stands."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Cli
from tokenrefresh.services.monitoring import MetricsPathRefused, write_atomically

# The metrics file does not depend on the database: one is enough.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def make_fifo(path: Path) -> None:
    os.mkfifo(path)


def make_symlink(path: Path) -> None:
    target = path.with_name("target.prom")
    target.write_text("# the operator's own file\n")
    path.symlink_to(target)


def make_device(path: Path) -> None:
    """A character device like /dev/null (1, 3), made here: /dev itself is never touched."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device needs root (CAP_MKNOD)")


def make_socket(path: Path) -> None:
    listening = socket.socket(socket.AF_UNIX)
    listening.bind(str(path))
    listening.close()  # the socket file stays


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("make", "kind", "still"),
    [
        (make_fifo, "a named pipe (FIFO)", stat.S_ISFIFO),
        (make_symlink, "a symbolic link", stat.S_ISLNK),
        (make_device, "a character device", stat.S_ISCHR),
        (make_socket, "a socket", stat.S_ISSOCK),
    ],
)
def test_what_is_not_a_regular_file_is_refused_and_left_alone(
    cli: Cli,
    tmp_path: Path,
    make: Callable[[Path], None],
    kind: str,
    still: Callable[[int], bool],
) -> None:
    folder = tmp_path / "textfile"
    folder.mkdir()
    path = folder / "tokenrefresh.prom"
    make(path)
    before = sorted(entry.name for entry in folder.iterdir())
    result = cli("refresh", "--window", "3h", "--metrics-file", str(path))
    assert result.exit_code == 0  # the run's result stands
    assert (
        f"error: could not write the metrics file {path}: it is {kind}; only a regular file, "
        "or a new file in an existing folder, is written"
    ) in " ".join(result.stderr.split())
    assert still(path.lstat().st_mode)  # not replaced by a regular file
    assert sorted(entry.name for entry in folder.iterdir()) == before  # no temporary file
    if make is make_symlink:
        assert path.with_name("target.prom").read_text() == "# the operator's own file\n"


@SQLITE_ONLY
def test_a_folder_that_does_not_exist_is_named_and_not_made(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "missing" / "tokenrefresh.prom"
    result = cli("refresh", "--window", "3h", "--metrics-file", str(path))
    assert result.exit_code == 0
    assert "its folder does not exist" in result.stderr
    assert not path.parent.exists()


@SQLITE_ONLY
def test_a_regular_file_is_replaced_atomically_and_stays_readable(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "textfile" / "tokenrefresh.prom"
    path.parent.mkdir()
    path.write_text("old\n")
    assert cli("refresh", "--window", "3h", "--metrics-file", str(path)).exit_code == 0
    assert "tokenrefresh_last_run_exit_code" in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) & 0o044  # node_exporter, another user, reads it
    assert [entry.name for entry in path.parent.iterdir()] == ["tokenrefresh.prom"]


def test_a_directory_is_refused_by_the_writer_too(tmp_path: Path) -> None:
    """The CLI refuses a directory before the run (Typer); the writer on its own as well."""
    with pytest.raises(MetricsPathRefused, match="it is a directory"):
        write_atomically(tmp_path, b"x")
    assert tmp_path.is_dir()
