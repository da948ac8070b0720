"""The stand-in's HTTP layer: scripted replies (:class:`Reply`), the answers a handler
thread sends, and the threading HTTP/1.1 server on 127.0.0.1 that hands every request to
``TikTokStandIn._decide``. A helper of ``standin.py``, kept apart to keep it readable.
Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from standin import TikTokStandIn

Body = str | bytes | dict[str, Any] | None


@dataclass(frozen=True)
class Reply:
    """A scripted answer instead of the normal behaviour."""

    status: int = 200
    body: Body = None  # dict -> JSON (application/json); str/bytes -> verbatim (text/html)
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to sleep before answering (instead of the stand-in's latency)
    consume: bool = False  # rotate a valid presented refresh token anyway: a lost answer
    drop: bool = False  # close the connection without answering (after delay)
    raw: bytes | None = None  # these bytes verbatim as the whole response (status line too)
    trickle: float = 0.0  # seconds between bytes: of the body, or of all of ``raw``
    endless: bool = False  # after the body, filler forever (no Content-Length) until hang-up


ENDLESS_FILLER = b" " * 65536
ENDLESS_LIMIT = 1 << 30  # an endless body still stops after 1 GiB, should nobody hang up


def tiktok_error(error: str, status: int = 400, description: str = "", **kw: Any) -> Reply:
    """A scripted reply in TikTok's OAuth error shape (error, error_description, log_id)."""
    body: dict[str, Any] = {
        "error": error,
        "error_description": description or error,
        "log_id": _log_id(),
    }
    return Reply(status=status, body=body, **kw)


def _log_id() -> str:
    return secrets.token_hex(16)


@dataclass(frozen=True)
class _Answer:
    """What a handler thread sends, decided under the stand-in's lock."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False
    raw: bytes | None = None
    trickle: float = 0.0
    endless: bool = False


def _answer_from_reply(reply: Reply) -> _Answer:
    body = reply.body
    content_type: str | None
    if body is None:
        raw, content_type = b"", None
    elif isinstance(body, dict):
        raw, content_type = json.dumps(body).encode(), "application/json"
    elif isinstance(body, str):
        raw, content_type = body.encode(), "text/html; charset=utf-8"
    else:
        raw, content_type = bytes(body), "text/html"
    return _Answer(
        status=reply.status,
        body=raw,
        content_type=content_type,
        headers=dict(reply.headers),
        delay=reply.delay,
        drop=reply.drop,
        raw=reply.raw,
        trickle=reply.trickle,
        endless=reply.endless,
    )


def _json_answer(status: int, payload: Mapping[str, Any]) -> _Answer:
    return _Answer(
        status=status, body=json.dumps(payload).encode(), content_type="application/json"
    )


def _error_answer(status: int, error: str, description: str) -> _Answer:
    return _json_answer(
        status, {"error": error, "error_description": description, "log_id": _log_id()}
    )


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def do_POST(self) -> None:
        self._serve("POST")

    def do_GET(self) -> None:
        self._serve("GET")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        """Silent."""

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            return b""
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self, method: str) -> None:
        try:
            body = self._read_body()
            target = urlsplit(self.path)
            answer = self.server.standin._decide(
                method=method,
                path=target.path,
                query=target.query,
                content_type=self.headers.get("Content-Type", ""),
                body=body,
                headers=dict(self.headers.items()),
            )
            if answer.delay > 0:
                time.sleep(answer.delay)
            if answer.drop:
                self.close_connection = True
                return
            if answer.raw is not None:
                self.close_connection = True
                self._send_bytes(answer.raw, answer.trickle)
                return
            if answer.trickle > 0 or answer.endless:
                self._send_shaped(answer)
                return
            self.send_response(answer.status)
            extra = {k.lower() for k in answer.headers}
            if answer.content_type is not None and "content-type" not in extra:
                self.send_header("Content-Type", answer.content_type)
            if "content-length" not in extra:
                self.send_header("Content-Length", str(len(answer.body)))
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if answer.body:
                self.wfile.write(answer.body)
        except OSError as exc:  # client hung up (timeout, drop), or stop() shut the socket
            self.close_connection = True
            self.server.standin._note_error(exc)

    def _send_shaped(self, answer: _Answer) -> None:
        """Headers at once, then the body trickled and/or followed by filler forever."""
        self.send_response(answer.status)
        extra = {k.lower() for k in answer.headers}
        if answer.content_type is not None and "content-type" not in extra:
            self.send_header("Content-Type", answer.content_type)
        if answer.endless:
            self.close_connection = True
            self.send_header("Connection", "close")
        elif "content-length" not in extra:
            self.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self._send_bytes(answer.body, answer.trickle)
        if answer.endless:
            sent = 0
            while sent < ENDLESS_LIMIT:
                self.wfile.write(ENDLESS_FILLER)
                sent += len(ENDLESS_FILLER)

    def _send_bytes(self, data: bytes, trickle: float) -> None:
        """All at once, or one byte every ``trickle`` seconds (until the client hangs up)."""
        if trickle <= 0:
            self.wfile.write(data)
            return
        for position in range(len(data)):
            self.wfile.write(data[position : position + 1])
            time.sleep(trickle)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # server_close() must not join handler threads that sleep
    allow_reuse_address = True
    request_queue_size = 1024  # many clients connecting at once (several processes)

    def __init__(self, standin: TikTokStandIn, port: int = 0) -> None:
        self.standin = standin
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self.accepted = 0
        super().__init__(("127.0.0.1", port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can be slow.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
            self.accepted += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Silent: remember the exception instead of printing a traceback."""
        exc = sys.exc_info()[1]
        if exc is not None:
            self.standin._note_error(exc)

    def wake_connections(self) -> None:
        """Shut down every open connection so idle keep-alive handler threads exit."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
