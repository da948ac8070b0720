"""A loopback HTTP server that stands in for TikTok's OAuth token endpoint.

Tests and benchmarks only. It speaks real HTTP/1.1 (keep-alive) on 127.0.0.1 so the code
under test goes through the real ``requests`` stack. Standard library only.

Normal behaviour follows /work/shared/tiktok-oauth.md: form-encoded ``POST /v2/oauth/token/``
with ``client_key``/``client_secret``/``grant_type=refresh_token``/``refresh_token``; every
refresh token is single use (rotated atomically under a lock). The same endpoint exchanges
authorization codes from :meth:`TikTokStandIn.authorize` (``grant_type=authorization_code``:
single use, bound to the redirect URI and an optional PKCE challenge), or from its consent
page (``GET /v2/auth/authorize/``: a user says yes at once, a 302 to the redirect URI), and
``POST /v2/oauth/revoke/`` revokes a user's tokens (state of all three:
``standin_consent.py``). :meth:`TikTokStandIn.snapshot` and :meth:`~TikTokStandIn.restore`
carry its tokens across restarts (examples/standin.py ``--state``).
Scripted :class:`Reply` objects replace the normal answer for chosen requests (429 with
Retry-After, 5xx, HTML garbage, slow answers, dropped connections, lost answers after a
rotation), and hostile ones: verbatim bytes (``raw``), answers trickled a byte at a time
(``trickle``), bodies that never end (``endless``). The HTTP layer: ``standin_http.py``.
"""

from __future__ import annotations

import collections
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

from standin_consent import (
    AUTHORIZE_PATH,
    CODE_TTL,
    ChallengeEncoding,
    CodeRejected,
    ConsentBook,
    ConsentRefused,
    read_consent_request,
    redirect_location,
)
from standin_http import (
    Reply,
    _Answer,
    _answer_from_reply,
    _error_answer,
    _json_answer,
    _media_type,
    _Server,
    tiktok_error,
)

__all__ = [
    "AUTHORIZE_PATH",
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

# A change to a normal answer: its JSON payload in, (HTTP status, payload to send) out.
Twist = Callable[[dict[str, Any]], tuple[int, Any]]


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
        # Called with a snapshot (under the lock) after every POST: to keep the tokens.
        self.on_change: Callable[[dict[str, Any]], None] | None = None
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

    def snapshot(self) -> dict[str, Any]:
        """The tokens it issued or registered, valid, spent and revoked, as JSON-ready data
        for :meth:`restore` (codes, counts and scripts are not kept)."""
        with self._lock:
            return self._snapshot_locked()

    def _snapshot_locked(self) -> dict[str, Any]:
        return {
            "valid": {token: list(owner) for token, owner in self._valid.items()},
            "refresh_owner": dict(self._refresh_owner),
            "access_owner": dict(self._access_owner),
            "newest": dict(self._newest),
            "revoked_access": self._consent.revoked_access,
        }

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """Know again the tokens of a :meth:`snapshot`, as they were then."""
        with self._lock:
            self._valid.update({t: (o, s) for t, (o, s) in snapshot["valid"].items()})
            self._refresh_owner.update(snapshot["refresh_owner"])
            self._access_owner.update(snapshot["access_owner"])
            self._newest.update(snapshot["newest"])
            self._consent.revoke_access(snapshot["revoked_access"])
            self._issued.extend([*snapshot["access_owner"], *snapshot["refresh_owner"]])

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
        query: str = "",
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
            if method == "GET" and path == AUTHORIZE_PATH:
                return self._delayed(self._consent_page_locked(query))
            if method != "POST" or path not in (TOKEN_PATH, REVOKE_PATH):
                return self._delayed(_json_answer(404, {"error": "not_found"}))
            answer = self._post_locked(path, is_form, form)
            if self.on_change is not None:
                self.on_change(self._snapshot_locked())
            return answer

    def _consent_page_locked(self, query: str) -> _Answer:
        """A user says yes: 302 to the redirect URI with a new code (the location in the
        body too); 400 with the reason for a request the page cannot take."""
        try:
            request = read_consent_request(
                query, client_key=self.client_key, default_scope=self.scope
            )
        except ConsentRefused as refused:
            return _Answer(400, f"{refused}\n".encode(), "text/plain; charset=utf-8")
        code = self._consent.authorize(
            request.open_id,
            redirect_uri=request.redirect_uri,
            scope=request.scope,
            challenge=request.challenge,
            encoding=request.encoding,
            now=time.monotonic(),
        )
        location = redirect_location(request, code)
        body = f"{location}\n".encode()
        return _Answer(302, body, "text/plain; charset=utf-8", {"Location": location})

    def _post_locked(self, path: str, is_form: bool, form: dict[str, str]) -> _Answer:
        """The token or revoke endpoint's answer (scripted or normal); the lock is held."""
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
