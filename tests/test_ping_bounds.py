"""Health-check pings are bounded: a ping server that trickles its answer, sends a gigabyte
or a gzip bomb cannot hold a run, its lock or its memory, nor keep SIGTERM from working.
Real `tokenrefresh refresh` processes, a real ping server on loopback, real signals."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import Cli, process_env
from helpers import AddAccounts, finish, start
from tokenrefresh.services.monitoring import PING_TIMEOUT, STOPPING_PING_TIMEOUT

pytestmark = [
    pytest.mark.slow,
    # The ping does not depend on the database: one is enough.
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

PING_PATH = "/ping/0b8c7d1e-hostile"
TRICKLE_EVERY = 2.0  # seconds between two bytes of a trickled answer
HUGE = 512 * 1024 * 1024  # bytes of a huge answer, and of a gzip bomb once inflated
MIB = 1024 * 1024


def gzip_bomb(size: int) -> bytes:
    """`size` zero bytes, gzip-compressed (about a thousandth of it)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(MIB)
    parts = [compressor.compress(chunk) for _ in range(size // MIB)]
    return b"".join([*parts, compressor.flush()])


class HostilePing:
    """A loopback ping server answering every ping the same hostile way: `trickle` (a
    status line, then a header one byte every TRICKLE_EVERY seconds, for ever), `huge`
    (HUGE bytes of body) or `bomb` (a gzip body that inflates to HUGE bytes); `ok` is a
    plain 200. Records the paths pinged and the body bytes it managed to write."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.paths: list[str] = []
        self.body_bytes_written = 0
        self.stopping = threading.Event()
        self.bomb = gzip_bomb(HUGE) if mode == "bomb" else b""
        ping = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                ping.paths.append(self.path)
                with contextlib.suppress(OSError):
                    ping.answer(self)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{PING_PATH}"

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        out = handler.wfile
        if self.mode == "trickle":
            out.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            out.flush()
            while not self.stopping.wait(TRICKLE_EVERY):
                out.write(b"a")
                out.flush()
            return
        body = {"huge": None, "bomb": self.bomb, "ok": b"OK"}[self.mode]
        handler.send_response(200)
        handler.send_header("Content-Length", str(HUGE if body is None else len(body)))
        if self.mode == "bomb":
            handler.send_header("Content-Encoding", "gzip")
        handler.end_headers()
        if body is not None:
            out.write(body)
            self.body_bytes_written += len(body)
            return
        chunk = bytes(MIB)
        while self.body_bytes_written < HUGE and not self.stopping.is_set():
            out.write(chunk)
            self.body_bytes_written += len(chunk)

    def wait_for(self, count: int, seconds: float = 60.0) -> None:
        deadline = time.monotonic() + seconds
        while len(self.paths) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.paths) >= count, self.paths

    def close(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def hostile_ping(mode: str) -> Iterator[HostilePing]:
    server = HostilePing(mode)
    try:
        yield server
    finally:
        server.close()


def pinged(env: dict[str, str], url: str) -> dict[str, str]:
    return {**env, "TOKENREFRESH_PING_URL": url}


def run_measured(env: dict[str, str], *args: str) -> tuple[int, str, int]:
    """`tokenrefresh ARGS` as a real process: its exit code, its stderr, and its peak
    resident memory in bytes (from the kernel's accounting of that one child)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "tokenrefresh", *args],
            env=process_env(env),
            stdout=out,
            stderr=err,
            text=True,
        )
        deadline = time.monotonic() + 120
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.05)
        process.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return process.returncode, err.read(), usage.ru_maxrss * 1024  # KiB on Linux


def test_a_trickling_ping_cannot_hold_the_run_or_its_lock(
    env: dict[str, str], add_accounts: AddAccounts, cli: Cli
) -> None:
    add_accounts(1)
    with hostile_ping("trickle") as ping:
        started = time.monotonic()
        process = start(pinged(env, ping.url), "refresh", "--window", "3h")
        code, _out, err = finish(process)  # the trickle would go on for ever
        elapsed = time.monotonic() - started
    assert code == 0, err
    assert ping.paths == [f"{PING_PATH}/start", PING_PATH]
    why = f"the health-check ping failed (no answer within {PING_TIMEOUT:g} s)"
    assert err.count(why) == 2, err
    assert elapsed < 2 * PING_TIMEOUT + 30  # two pings at their deadline, and the run
    assert cli("refresh", "--window", "3h").exit_code == 0  # the lock is free again
    assert ping.url not in err


def test_sigterm_during_a_trickling_ping_exits_143_promptly(
    env: dict[str, str], add_accounts: AddAccounts
) -> None:
    add_accounts(1)
    with hostile_ping("trickle") as ping:
        process = start(pinged(env, ping.url), "refresh", "--window", "3h")
        ping.wait_for(1)  # the start ping is trickling in: the run holds its lock
        time.sleep(TRICKLE_EVERY)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code, _out, err = finish(process)
        after_signal = time.monotonic() - signalled
    assert code == 128 + signal.SIGTERM, err
    # The start ping ends at the signal, the /fail ping at the shorter bound of a stop.
    assert ping.paths == [f"{PING_PATH}/start", f"{PING_PATH}/fail"]
    assert "the health-check ping failed (cut short: the run is stopping)" in err
    stopping = f"the health-check ping failed (no answer within {STOPPING_PING_TIMEOUT:g} s)"
    assert stopping in err
    assert after_signal < STOPPING_PING_TIMEOUT + 30  # not the trickle's for ever


@pytest.mark.parametrize("mode", ["huge", "bomb"])
def test_a_huge_answer_or_a_gzip_bomb_to_a_ping_is_not_read(env: dict[str, str], mode: str) -> None:
    """Peak memory against a plain 200, and against 512 MiB sent or inflated: the same,
    give or take far less than what reading the answer would take."""
    with hostile_ping("ok") as ping:
        code, err, baseline = run_measured(pinged(env, ping.url), "refresh", "--window", "3h")
    assert code == 0, err
    with hostile_ping(mode) as ping:
        code, err, peak = run_measured(pinged(env, ping.url), "refresh", "--window", "3h")
        assert code == 0, err
        assert ping.paths == [f"{PING_PATH}/start", PING_PATH]
    assert peak < baseline + 128 * MIB < baseline + HUGE, (baseline, peak)
    if mode == "huge":  # what loopback buffers is a few MiB; a reader would take it all
        assert ping.body_bytes_written < 64 * MIB, ping.body_bytes_written
    assert "health-check ping" not in err  # a 200 is a 200: the body does not matter
