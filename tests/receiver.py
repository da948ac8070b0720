"""A real webhook receiver on 127.0.0.1 for the delivery tests.

Every request is recorded (webhook-id, webhook-timestamp, headers, body, path) and checked
with `standardwebhooks.Webhook(secret).verify`, the way a receiver would. Each request is
answered by the next `Reply` of the script (then by `default`): a status, a delay before
answering, a dropped connection, a redirect, a huge body, headers trickled a byte at a
time, or the request's Authorization header echoed. `closed_port()` gives a port where
nothing listens (connection refused).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook, WebhookVerificationError

HUGE = 1 << 30  # the Content-Length a huge answer claims


@dataclass(frozen=True)
class Reply:
    status: int = 204
    delay: float = 0.0  # seconds before answering
    body: bytes = b""
    drop: bool = False  # close the connection without answering
    location: str | None = None  # a Location header (for a redirect)
    huge: bool = False  # claim HUGE bytes and write until the client stops reading
    trickle: bool = False  # the headers, one byte every 0.1 s, forever
    echo: bool = False  # the request's Authorization header, in the body and in X-Echo


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool

    @property
    def id(self) -> str | None:
        return self.headers.get("webhook-id")

    @property
    def timestamp(self) -> str | None:
        return self.headers.get("webhook-timestamp")


@dataclass
class Receiver:
    secret: str
    script: list[Reply] = field(default_factory=list)
    default: Reply = field(default_factory=Reply)
    received: list[Received] = field(default_factory=list)
    huge_bytes_written: int = 0  # by the last huge answer, before the client hung up
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/events"

    def next_reply(self) -> Reply:
        with self.lock:
            return self.script.pop(0) if self.script else self.default

    def record(self, received: Received) -> None:
        with self.lock:
            self.received.append(received)

    def wait_for(self, count: int, seconds: float = 5.0) -> list[Received]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.01)
        with self.lock:
            return list(self.received)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        receiver = self.server.receiver
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            Webhook(receiver.secret).verify(body, headers, json_parse=False)
            verified = True
        except (WebhookVerificationError, ValueError, UnicodeDecodeError):
            verified = False
        receiver.record(Received(self.path, headers, body, verified))
        reply = receiver.next_reply()
        if reply.delay and receiver.stopping.wait(reply.delay):
            return
        if reply.drop:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if reply.trickle:
            self._trickle(receiver)
            return
        self.send_response(reply.status)
        body = reply.body
        if reply.echo:
            authorization = self.headers.get("Authorization", "")
            self.send_header("X-Echo", authorization)
            body = f"you sent {authorization!r} with {self.headers!s}".encode()
        if reply.location:
            self.send_header("Location", reply.location)
        if reply.huge:
            self._huge(receiver)
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _trickle(self, receiver: Receiver) -> None:
        with contextlib.suppress(OSError):
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            self.wfile.flush()
            while not receiver.stopping.wait(0.1):
                self.wfile.write(b"a")
                self.wfile.flush()

    def _huge(self, receiver: Receiver) -> None:
        self.send_header("Content-Length", str(HUGE))
        self.end_headers()
        chunk = b"x" * 65536
        written = 0
        with contextlib.suppress(OSError):
            self.wfile.flush()
            while written < HUGE and not receiver.stopping.is_set():
                self.wfile.write(chunk)
                written += len(chunk)
        receiver.huge_bytes_written = written


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: Receiver


@contextlib.contextmanager
def running_receiver(secret: str) -> Iterator[Receiver]:
    receiver = Receiver(secret)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.receiver = receiver
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield receiver
    finally:
        receiver.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port bound but not listening, for the test's duration: connecting to it
    is refused, and no other process can take it meanwhile."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
    finally:
        sock.close()
