"""A loopback HTTP server that stands in for TikTok's OAuth token endpoint.

Tests and benchmarks only. It speaks real HTTP/1.1 (keep-alive) on 127.0.0.1 so the code
under test goes through the real ``requests`` stack. Standard library only.

Normal behaviour follows /work/shared/tiktok-oauth.md: form-encoded ``POST /v2/oauth/token/``
with ``client_key``/``client_secret``/``grant_type=refresh_token``/``refresh_token``; every
refresh token is single use (rotated atomically under a lock). The same endpoint exchanges
authorization codes from :meth:`TikTokStandIn.authorize` (``grant_type=authorization_code``:
single use, bound to the redirect URI and an optional PKCE challenge), and
``POST /v2/oauth/revoke/`` revokes a user's tokens (state of both: ``standin_consent.py``).
Scripted :class:`Reply` objects replace the normal answer for chosen requests (429 with
Retry-After, 5xx, HTML garbage, slow answers, dropped connections, lost answers after a
rotation), and hostile ones: verbatim bytes (``raw``), answers trickled a byte at a time
(``trickle``), bodies that never end (``endless``).
"""

from __future__ import annotations

import collections
import contextlib
import json
import secrets
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from standin_consent import CODE_TTL, ChallengeEncoding, CodeRejected, ConsentBook

__all__ = [
    "FORM_CONTENT_TYPE",
    "REVOKE_PATH",
    "TOKEN_PATH",
    "IssuedTokens",
    "Received",
    "Reply",
    "TikTokStandIn",
    "Twist",
    "tiktok_error",
]

TOKEN_PATH = "/v2/oauth/token/"
REVOKE_PATH = "/v2/oauth/revoke/"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

Body = str | bytes | dict[str, Any] | None
# A change to a normal answer: its JSON payload in, (HTTP status, payload to send) out.
Twist = Callable[[dict[str, Any]], tuple[int, Any]]


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


@dataclass(frozen=True)
class Received:
    """One request the stand-in received."""

    path: str
    form: dict[str, str]  # parsed form body (first value of each key); {} if not form-encoded
    content_type: str
    at: float  # time.monotonic() when received
    method: str = "POST"
    body: bytes = b""  # the raw request body
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class IssuedTokens:
    """Tokens handed out by :meth:`TikTokStandIn.issue` (like a fresh OAuth consent)."""

    open_id: str
    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_in: int
    scope: str

    def as_import_line(self, **extra: Any) -> dict[str, Any]:
        """The dict for one JSON Lines import record, plus ``extra`` keys (label, issued_at...)."""
        line: dict[str, Any] = {
            "open_id": self.open_id,
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_in": self.expires_in,
            "refresh_expires_in": self.refresh_expires_in,
            "scope": self.scope,
        }
        line.update(extra)
        return line


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
            answer = self.server.standin._decide(
                method=method,
                path=urlsplit(self.path).path,
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


class TikTokStandIn:
    """A thread-safe loopback stand-in for TikTok's OAuth token (and revoke) endpoint."""

    def __init__(
        self,
        *,
        client_key: str = "test-client-key",
        client_secret: str = "test-client-secret",  # noqa: S107 - a test fixture value
        access_ttl: int = 7200,
        refresh_ttl: int = 15_552_000,
        latency: float = 0.0,
        scope: str = "user.info.basic,video.publish",
        port: int = 0,  # 0: a free port; examples/standin.py asks for a given one
    ) -> None:
        self.client_key = client_key
        self._port = port
        self.client_secret = client_secret
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.latency = latency
        self.scope = scope
        # Behaviour switches, settable at any time.
        self.default: Reply | None = None
        self.invalid_grant_status: int = 400
        self.omit_refresh_token: bool = False  # refreshes only
        self.code_ttl: float = CODE_TTL  # seconds an authorization code can be exchanged
        # The status of invalid_grant for a revoke of an access token already revoked.
        self.revoke_invalid_status: int = 400
        self.wrong_open_id: str | None = None
        # open_id -> seconds: the normal answer for that account comes this much later
        # (refreshes, code exchanges and revokes: the owner of the token or code presented).
        self.slow: dict[str, float] = {}
        # open_id -> twists of its next normal answers (one each, in order): a function
        # of the answer's JSON payload returning (status, new payload). The rotation is
        # real: the new tokens in the payload are the valid ones. Code exchanges are twisted
        # alike; a revoke's twist gets {} and may return a payload of None for no body.
        self._twists: dict[str, collections.deque[Twist]] = {}

        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._valid: dict[str, tuple[str, str]] = {}  # valid refresh token -> (open_id, scope)
        self._refresh_owner: dict[str, str] = {}  # every refresh token ever -> open_id
        self._access_owner: dict[str, str] = {}  # every access token ever -> open_id
        self._newest: dict[str, str] = {}  # open_id -> newest refresh token issued
        self._issued: list[str] = []
        self._rotations: collections.Counter[str] = collections.Counter()
        self._lost_rotations: collections.Counter[str] = collections.Counter()
        self._scripts: dict[str, collections.deque[Reply]] = {}
        self._global_script: collections.deque[Reply] = collections.deque()
        self._received: list[Received] = []
        self._presented: collections.Counter[str] = collections.Counter()
        self._errors: list[BaseException] = []
        self._consent = ConsentBook()  # authorization codes, revoked access tokens

        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> TikTokStandIn:
        """Bind 127.0.0.1 on a free port and serve in a daemon thread."""
        if self._server is not None:
            return self
        server = _Server(self, self._port)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"tiktok-standin-{server.server_port}",
            daemon=True,
        )
        self._server = server
        self._thread = thread
        thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket; returns promptly."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = None
        self._thread = None
        server.shutdown()
        server.wake_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> TikTokStandIn:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the stand-in is not started")
        return self._server.server_port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def token_url(self) -> str:
        return self.base_url + TOKEN_PATH

    @property
    def revoke_url(self) -> str:
        return self.base_url + REVOKE_PATH

    @property
    def accepted_connections(self) -> int:
        """TCP connections accepted so far (keep-alive check)."""
        return 0 if self._server is None else self._server.accepted

    # -- token state -------------------------------------------------------------------------

    def _new_access(self, open_id: str) -> str:
        token = "act." + secrets.token_urlsafe(32)
        self._access_owner[token] = open_id
        self._issued.append(token)
        return token

    def _new_refresh(self, open_id: str, scope: str) -> str:
        token = "rft." + secrets.token_urlsafe(32)
        self._valid[token] = (open_id, scope)
        self._refresh_owner[token] = open_id
        self._newest[open_id] = token
        self._issued.append(token)
        return token

    def _revoke_locked(self, open_id: str) -> None:
        """Every refresh token of ``open_id``, and every access token issued to it so far,
        stops working."""
        for token in [t for t, (owner, _) in self._valid.items() if owner == open_id]:
            del self._valid[token]
        self._consent.revoke_access(
            token for token, owner in self._access_owner.items() if owner == open_id
        )

    def issue(self, open_id: str, *, scope: str | None = None) -> IssuedTokens:
        """Register a fresh valid refresh token (and access token) for ``open_id``."""
        scope = self.scope if scope is None else scope
        with self._lock:
            access = self._new_access(open_id)
            refresh = self._new_refresh(open_id, scope)
        return IssuedTokens(
            open_id=open_id,
            access_token=access,
            refresh_token=refresh,
            expires_in=self.access_ttl,
            refresh_expires_in=self.refresh_ttl,
            scope=scope,
        )

    def register(
        self,
        open_id: str,
        *,
        access_token: str,
        refresh_token: str,
        scope: str | None = None,
    ) -> IssuedTokens:
        """Accept a given token pair for ``open_id``, as if TikTok had issued it (sample files
        with fixed tokens, examples/standin.py). The refresh token is then the account's
        newest, single use like any other; a token already known is refused."""
        scope = self.scope if scope is None else scope
        with self._lock:
            if refresh_token in self._refresh_owner or access_token in self._access_owner:
                raise ValueError(f"{open_id}: a token the stand-in already knows")
            self._access_owner[access_token] = open_id
            self._valid[refresh_token] = (open_id, scope)
            self._refresh_owner[refresh_token] = open_id
            self._newest[open_id] = refresh_token
            self._issued.extend([access_token, refresh_token])
        return IssuedTokens(
            open_id=open_id,
            access_token=access_token,
            refresh_token=refresh_token,
            expires_in=self.access_ttl,
            refresh_expires_in=self.refresh_ttl,
            scope=scope,
        )

    def revoke(self, open_id: str) -> None:
        """Every token of ``open_id`` becomes invalid (the user revoked access)."""
        with self._lock:
            self._revoke_locked(open_id)

    def authorize(
        self,
        open_id: str,
        *,
        redirect_uri: str,
        scope: str | None = None,
        code_challenge: str | None = None,
        challenge_encoding: ChallengeEncoding = "hex",
    ) -> str:
        """The user consents: a single-use authorization code for ``open_id``, to be
        exchanged within ``code_ttl`` seconds with exactly this ``redirect_uri`` (and, with a
        ``code_challenge``, the verifier whose S256 challenge in ``challenge_encoding`` it is).
        """
        with self._lock:
            return self._consent.authorize(
                open_id,
                redirect_uri=redirect_uri,
                scope=self.scope if scope is None else scope,
                challenge=code_challenge,
                encoding=challenge_encoding,
                now=time.monotonic(),
            )

    def is_code_pending(self, code: str) -> bool:
        """True while the code was issued and no exchange has presented it yet."""
        with self._lock:
            return self._consent.is_pending(code)

    def exchange_count(self, open_id: str | None = None) -> int:
        """Code exchanges answered with a token pair (lost ones, by ``consume``, not included)."""
        with self._lock:
            counter = self._consent.exchanges
            return sum(counter.values()) if open_id is None else counter[open_id]

    def lost_exchange_count(self, open_id: str | None = None) -> int:
        """Code exchanges done by scripted ``consume`` replies (nobody learnt the pair)."""
        with self._lock:
            counter = self._consent.lost_exchanges
            return sum(counter.values()) if open_id is None else counter[open_id]

    def revoke_count(self, open_id: str | None = None) -> int:
        """Revokes at the endpoint that revoked something (answered 200 or consumed)."""
        with self._lock:
            counter = self._consent.revocations
            return sum(counter.values()) if open_id is None else counter[open_id]

    def access_revoked(self, access_token: str) -> bool:
        """True if the access token was issued and then revoked (endpoint or :meth:`revoke`)."""
        with self._lock:
            return self._consent.is_revoked(access_token)

    @property
    def issued_codes(self) -> list[str]:
        """Every authorization code ever issued (copy): secrets, like the tokens."""
        with self._lock:
            return list(self._consent.codes)

    def is_valid(self, refresh_token: str) -> bool:
        with self._lock:
            return refresh_token in self._valid

    def current_refresh_token(self, open_id: str) -> str | None:
        """The newest still-valid refresh token of ``open_id``."""
        with self._lock:
            newest = self._newest.get(open_id)
            return newest if newest is not None and newest in self._valid else None

    def refresh_count(self, open_id: str | None = None) -> int:
        """Successful refreshes answered with 200 (lost rotations not included)."""
        with self._lock:
            if open_id is None:
                return sum(self._rotations.values())
            return self._rotations[open_id]

    @property
    def lost_rotations(self) -> int:
        """Rotations done by scripted ``consume`` replies (nobody learnt the new token)."""
        with self._lock:
            return sum(self._lost_rotations.values())

    def lost_rotation_count(self, open_id: str) -> int:
        with self._lock:
            return self._lost_rotations[open_id]

    @property
    def issued_tokens(self) -> list[str]:
        """Every access and refresh token ever issued (copy)."""
        with self._lock:
            return list(self._issued)

    # -- scripting ---------------------------------------------------------------------------

    def script(self, *replies: Reply, open_id: str | None = None) -> None:
        """Queue scripted replies: per ``open_id`` (FIFO) or global (FIFO)."""
        with self._lock:
            if open_id is None:
                self._global_script.extend(replies)
            else:
                self._scripts.setdefault(open_id, collections.deque()).extend(replies)

    def twist(self, open_id: str, *twists: Twist) -> None:
        """Queue changes to ``open_id``'s next normal (rotating) answers, one each."""
        with self._lock:
            self._twists.setdefault(open_id, collections.deque()).extend(twists)

    def pending_scripts(self, open_id: str | None = None) -> int:
        """How many scripted replies are still queued (global, or for one open_id)."""
        with self._lock:
            if open_id is None:
                return len(self._global_script)
            return len(self._scripts.get(open_id, ()))

    def clear_scripts(self) -> None:
        with self._lock:
            self._scripts.clear()
            self._global_script.clear()

    # -- request log -------------------------------------------------------------------------

    @property
    def received(self) -> list[Received]:
        """Every request, in arrival order (copy)."""
        with self._lock:
            return list(self._received)

    def presented(self) -> collections.Counter[str]:
        """refresh_token -> times presented to the token endpoint (any outcome)."""
        with self._lock:
            return collections.Counter(self._presented)

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> None:
        """Block until at least ``n`` requests were received; TimeoutError otherwise."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._received) >= n, timeout):
                raise TimeoutError(
                    f"stand-in received {len(self._received)} requests, wanted {n}"
                    f" within {timeout}s"
                )

    def reset_log(self) -> None:
        """Clear received and presented."""
        with self._lock:
            self._received.clear()
            self._presented.clear()

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions swallowed in handler threads (mostly clients hanging up)."""
        with self._lock:
            return list(self._errors)

    def _note_error(self, exc: BaseException) -> None:
        with self._lock:
            if len(self._errors) < 1000:
                self._errors.append(exc)

    # -- the endpoint ------------------------------------------------------------------------

    def _decide(
        self,
        *,
        method: str,
        path: str,
        content_type: str,
        body: bytes,
        headers: Mapping[str, str],
    ) -> _Answer:
        """Record the request and decide the answer, atomically. Sleeping is the caller's job."""
        at = time.monotonic()
        is_form = _media_type(content_type) == FORM_CONTENT_TYPE
        form: dict[str, str] = {}
        if is_form:
            parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            form = {key: values[0] for key, values in parsed.items()}
        with self._cond:
            self._received.append(
                Received(
                    path=path,
                    form=form,
                    content_type=content_type,
                    at=at,
                    method=method,
                    body=body,
                    headers=headers,
                )
            )
            self._cond.notify_all()
            if method != "POST" or path not in (TOKEN_PATH, REVOKE_PATH):
                return self._delayed(_json_answer(404, {"error": "not_found"}))

            exchange = path == TOKEN_PATH and form.get("grant_type") == "authorization_code"
            token = None
            if exchange:
                owner = self._consent.owner_of(form.get("code"))
            elif path == TOKEN_PATH:
                token = form.get("refresh_token")
                if token is not None:
                    self._presented[token] += 1
                owner = self._refresh_owner.get(token) if token is not None else None
            else:
                access = form.get("token")
                owner = self._access_owner.get(access) if access is not None else None

            reply = self._pop_script(owner)
            if reply is not None:
                if reply.consume and exchange:  # the exchange happens, its answer is lost
                    self._token_endpoint_locked(is_form, form, lost=True)
                elif reply.consume and path == REVOKE_PATH:
                    self._revoke_endpoint_locked(is_form, form, lost=True)
                elif reply.consume and token is not None and token in self._valid:
                    open_id, scope = self._valid.pop(token)
                    self._new_refresh(open_id, scope)
                    self._new_access(open_id)
                    self._lost_rotations[open_id] += 1
                return _answer_from_reply(reply)

            extra = self.slow.get(owner, 0.0) if owner is not None else 0.0
            if path == TOKEN_PATH:
                return self._delayed(self._token_endpoint_locked(is_form, form), extra)
            return self._delayed(self._revoke_endpoint_locked(is_form, form), extra)

    def _delayed(self, answer: _Answer, extra: float = 0.0) -> _Answer:
        latency = max(self.latency, extra)
        if latency <= 0:
            return answer
        return _Answer(
            status=answer.status,
            body=answer.body,
            content_type=answer.content_type,
            headers=answer.headers,
            delay=latency,
        )

    def _pop_script(self, owner: str | None) -> Reply | None:
        if owner is not None:
            queue = self._scripts.get(owner)
            if queue:
                return queue.popleft()
        if self._global_script:
            return self._global_script.popleft()
        return self.default

    def _client_error(self, is_form: bool, form: Mapping[str, str]) -> _Answer | None:
        if not is_form:
            return _error_answer(
                400,
                "invalid_request",
                "Content-Type must be application/x-www-form-urlencoded.",
            )
        if (
            form.get("client_key") != self.client_key
            or form.get("client_secret") != self.client_secret
        ):
            return _error_answer(401, "invalid_client", "Client key or secret is invalid.")
        return None

    def _token_endpoint_locked(
        self, is_form: bool, form: Mapping[str, str], *, lost: bool = False
    ) -> _Answer:
        """The app's credentials first (a wrong one leaves a code or token unspent), then the
        grant. ``lost``: a scripted ``consume``, whose answer nobody receives."""
        error = self._client_error(is_form, form)
        if error is not None:
            return error
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            return self._exchange_locked(form, lost=lost)
        if grant_type != "refresh_token":
            return _error_answer(
                400,
                "unsupported_grant_type",
                "Only grant_type=refresh_token and authorization_code are supported.",
            )
        return self._refresh_locked(form)

    def _exchange_locked(self, form: Mapping[str, str], *, lost: bool) -> _Answer:
        """Any attempt spends a pending code; a failed one answers invalid_grant."""
        try:
            authorization = self._consent.spend(
                form.get("code", ""),
                redirect_uri=form.get("redirect_uri"),
                verifier=form.get("code_verifier"),
                now=time.monotonic(),
                ttl=self.code_ttl,
            )
        except CodeRejected as rejected:
            return _error_answer(self.invalid_grant_status, "invalid_grant", rejected.description)
        open_id = authorization.open_id
        payload: dict[str, Any] = {
            "access_token": self._new_access(open_id),
            "expires_in": self.access_ttl,
            "open_id": self.wrong_open_id if self.wrong_open_id is not None else open_id,
            "refresh_expires_in": self.refresh_ttl,
            "refresh_token": self._new_refresh(open_id, authorization.scope),
            "scope": authorization.scope,
            "token_type": "Bearer",
        }
        if lost:
            self._consent.lost_exchanges[open_id] += 1
            return _json_answer(200, payload)
        self._consent.exchanges[open_id] += 1
        return self._twisted(open_id, payload)

    def _twisted(self, open_id: str, payload: dict[str, Any]) -> _Answer:
        """The normal answer, or what ``open_id``'s next twist makes of it."""
        twists = self._twists.get(open_id)
        if twists:
            status, twisted = twists.popleft()(payload)
            if twisted is None:
                return _Answer(status=status)
            return _json_answer(status, twisted)
        return _json_answer(200, payload)

    def _refresh_locked(self, form: Mapping[str, str]) -> _Answer:
        token = form.get("refresh_token", "")
        state = self._valid.get(token)
        if state is None:
            return _error_answer(
                self.invalid_grant_status,
                "invalid_grant",
                "Refresh token is invalid or expired.",
            )
        open_id, scope = state
        payload: dict[str, Any] = {
            "access_token": self._new_access(open_id),
            "expires_in": self.access_ttl,
            "open_id": self.wrong_open_id if self.wrong_open_id is not None else open_id,
            "refresh_expires_in": self.refresh_ttl,
        }
        if not self.omit_refresh_token:
            del self._valid[token]
            payload["refresh_token"] = self._new_refresh(open_id, scope)
        payload["scope"] = scope
        payload["token_type"] = "Bearer"
        self._rotations[open_id] += 1
        return self._twisted(open_id, payload)

    def _revoke_endpoint_locked(
        self, is_form: bool, form: Mapping[str, str], *, lost: bool = False
    ) -> _Answer:
        """Revoking an issued access token revokes all of its user's tokens so far; revoking
        one already revoked answers invalid_grant; one never issued, 200 with nothing done."""
        error = self._client_error(is_form, form)
        if error is not None:
            return error
        access = form.get("token")
        if not access:
            return _error_answer(400, "invalid_request", "Missing token.")
        open_id = self._access_owner.get(access)
        if open_id is None:
            return _Answer(status=200)
        if self._consent.is_revoked(access):
            return _error_answer(
                self.revoke_invalid_status,
                "invalid_grant",
                "Access token is invalid or has been revoked.",
            )
        self._revoke_locked(open_id)
        self._consent.revocations[open_id] += 1
        if lost or not self._twists.get(open_id):
            return _Answer(status=200)
        return self._twisted(open_id, {})
