"""Reading a NAME_FILE: a regular file of a few KiB, whatever the path points at.

A FIFO would block the open or the read forever, and a device such as /dev/zero never
ends: both are refused before they are read, and what is read is bounded anyway. A symlink
to a regular file is fine: Kubernetes mounts Secrets so.

Who else may read a secret's file (`shared_with`): others' permission bits always count;
group bits only when the file's group is not one of this process's own. Group read is how
a file is shared *with* the process: Kubernetes with `fsGroup` mounts a Secret root-owned,
mode 0440, group the pod's group; a host may do the same with a service's group.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tokenrefresh.errors import ConfigError

__all__ = ["MAX_FILE_BYTES", "file_kind", "read_small_file", "shared_with"]

# A `_FILE` holds one value (a key list, a URL, a secret): a few KiB at most. More means
# the wrong file, and reading it whole could take the memory of the host.
MAX_FILE_BYTES = 64 * 1024


def read_small_file(variable: str, file_name: str) -> tuple[bytes, os.stat_result]:
    """The bytes of a regular file of at most MAX_FILE_BYTES, and its status (a symlink's
    target's); ConfigError naming `variable` otherwise."""
    try:
        # Checked before opening: opening some devices has effects (a tape rewinds).
        _require_regular(variable, file_name, Path(file_name).stat())
        # O_NONBLOCK: if it became a FIFO meanwhile, the open still returns at once.
        descriptor = os.open(file_name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            status = os.fstat(descriptor)
            _require_regular(variable, file_name, status)
            data = b""
            while len(data) <= MAX_FILE_BYTES and (
                chunk := os.read(descriptor, MAX_FILE_BYTES + 1 - len(data))
            ):
                data += chunk
        finally:
            os.close(descriptor)
    except OSError as error:
        raise ConfigError(
            f"cannot read {variable} ({file_name}): {error.strerror or error}"
        ) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(
            f"{variable} ({file_name}) is larger than {MAX_FILE_BYTES // 1024} KiB: it should "
            "hold one value (is it the right file?)"
        )
    return data, status


def _require_regular(variable: str, file_name: str, status: os.stat_result) -> None:
    if not stat.S_ISREG(status.st_mode):
        raise ConfigError(
            f"{variable} ({file_name}) is {file_kind(status.st_mode)}, not a regular file: "
            "point it at a file that holds the value"
        )


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, in words (`mode` as `lstat` or `stat` give
    it): a symbolic link, a directory, a named pipe (FIFO), a device, a socket."""
    kinds = (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((kind for test, kind in kinds if test(mode)), "a special file")


def shared_with(status: os.stat_result) -> str | None:
    """Who besides this process may read or write the file `status` describes, in words
    ("any user", "group 4242, which this process is not in"); None when nobody (root aside).

    Others' read or write bit always counts. A group bit counts only when the file's group
    is none of this process's groups (its effective gid, or a supplementary group such as
    a pod's fsGroup): then the file's group is a stranger's, not the way it was shared."""
    mode = stat.S_IMODE(status.st_mode)
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        return "any user"
    if mode & (stat.S_IRGRP | stat.S_IWGRP) and status.st_gid not in _own_groups():
        return f"group {status.st_gid}, which this process is not in"
    return None


def _own_groups() -> set[int]:
    return {os.getegid(), *os.getgroups()}
