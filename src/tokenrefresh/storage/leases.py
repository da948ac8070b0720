"""Who holds a lease, and when a holder may be declared gone before its lease runs out.

A lease owner is `host:space:pid:nonce`, where `space` is 12 hex digits of a SHA-256 of
the boot id and the pid namespace (`/proc/self/ns/pid`) of the process. A pid means
something only inside its own pid namespace on its own boot: two containers of one pod,
pods with `hostNetwork: true` or `docker --network host` share a hostname but not a
process table, and a holder's pid that does not exist *here* may be alive *there*. So a
holder is declared gone early only if it is certainly in the caller's own pid namespace on
the same boot and its pid no longer exists; in every other case (another host, another
namespace, an identity that cannot be read, an owner in the old `host:pid:nonce` form) the
lease must run out.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
from pathlib import Path

__all__ = ["holder_is_gone", "lease_owner", "process_space"]

HOST_CHARS = 30  # of the hostname; with the rest, an owner fits lease_owner's 64 characters
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
PID_NAMESPACE = Path("/proc/self/ns/pid")
UNKNOWN_SPACE = "unknown"  # never equal to a readable identity: never declared gone early


def process_space() -> str:
    """12 hex digits naming this boot and this process's pid namespace, or `unknown` if
    either cannot be read (then no holder is ever declared gone early)."""
    try:
        boot = BOOT_ID.read_text(encoding="ascii").strip()
        namespace = str(PID_NAMESPACE.readlink())
    except (OSError, UnicodeDecodeError):
        return UNKNOWN_SPACE
    if not boot or not namespace:
        return UNKNOWN_SPACE
    return hashlib.sha256(f"{boot}\n{namespace}".encode()).hexdigest()[:12]


def lease_owner() -> str:
    """`host:space:pid:nonce`: names this process where its pid means something, unique per
    claim."""
    host = socket.gethostname()[:HOST_CHARS]
    return f"{host}:{process_space()}:{os.getpid()}:{secrets.token_hex(4)}"


def holder_is_gone(owner: str) -> bool:
    """True only if the holder ran in this pid namespace on this boot (same host, same
    identity) and its process no longer exists. Anything else, including an owner written
    in the old three-part form, is left to its lease's end."""
    parts = owner.split(":")
    if len(parts) != 4:
        return False
    host, space, pid_text, _ = parts
    here = process_space()
    if here == UNKNOWN_SPACE or space != here or host != socket.gethostname()[:HOST_CHARS]:
        return False
    if not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):  # it exists but is not ours to signal; or no pid
        return False
    return False
